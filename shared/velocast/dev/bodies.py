"""The bodies the old system's clients send today (README, Using the functions): what the
demo sends, what the tests and the bundle checks replay."""

OLD_RECORD = {
    "nom_du_compteur": "35 boulevard de Ménilmontant NO-SE",
    "date_et_heure_de_comptage": "2025-05-17 18:00:00+02:00",
    "coordonnées_géographiques": "48.8672, 2.3501",
    "mois_annee_comptage": "mai 2025",
}
OLD_BODIES = {
    "classify": {"records": [OLD_RECORD]},
    "regress": {"records": [OLD_RECORD], "model_type": "nn", "metric": "r2"},
}
