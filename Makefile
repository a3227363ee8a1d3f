# velocast: the commands a user types. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STORE ?= models
SAMPLE := data/paris-sample.csv
DATA ?= $(SAMPLE)
MODELS ?= gbdt,rf,nn,affluence
REAL_DATA := ../shared/data/paris-bike-counts-2020-09-01_2021-08-09.csv.gz
TFVARS ?= terraform/terraform.tfvars
SOURCE ?= https://opendata.paris.fr

.DEFAULT_GOAL := help
.PHONY: help install browser test test-fast test-unit test-service test-e2e test-browser sample-data train models serve demo screenshot api-spec package \
        bench bench-versions backtest attack attack-transport tf-fmt tf-check tf-schema checkov plan deploy publish \
        api-key admin-key retire-keys destroy clean ingest retrain report trainer-image

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed ## create .venv with everything (runtime, training, tests)

# Debian's chromium + chromedriver for the page's browser tests (Selenium drives them;
# nothing is downloaded at test time). Skipped when both are already there.
# VELOCAST_CHROMIUM / VELOCAST_CHROMEDRIVER (read by the tests too) point at another
# pair, e.g. the Google Chrome and driver GitHub's runners ship (ci.yml).
VELOCAST_CHROMIUM ?= /usr/bin/chromium
VELOCAST_CHROMEDRIVER ?= /usr/bin/chromedriver
browser: ## install chromium and chromedriver for the browser tests (apt-get, needs root or sudo)
	@if [ -x "$(VELOCAST_CHROMIUM)" ] && [ -x "$(VELOCAST_CHROMEDRIVER)" ]; then \
		echo "browser: $(VELOCAST_CHROMIUM) and $(VELOCAST_CHROMEDRIVER) already installed"; \
	elif ! command -v apt-get >/dev/null || { [ "$$(id -u)" != 0 ] && ! command -v sudo >/dev/null; }; then \
		echo "browser: $(VELOCAST_CHROMIUM) or $(VELOCAST_CHROMEDRIVER) is missing and this user cannot apt-get." >&2; \
		echo "  Run this first, as root: apt-get install -y chromium chromium-driver" >&2; \
		echo "  (not Debian/Ubuntu: install Chromium and its driver, set VELOCAST_CHROMIUM and VELOCAST_CHROMEDRIVER)" >&2; \
		exit 1; \
	else \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) \
			apt-get install -y -qq chromium chromium-driver; \
	fi

# The browser tests fail (never skip) without chromium: `make test` installs it first, so
# the README's command passes on a fresh machine (apt-get: root, or sudo; otherwise
# `make browser` prints the one command to run first). The tiers (README, "Tests") run
# alone with the targets below; `make test` runs them all in one session, so the trained
# store and the shared servers are made once.
test: install browser ## the whole test suite, every tier (what CI runs); installs chromium for the page tests
	$(PY) -m pytest -q

test-fast: install ## the suite without the slow, real-data and checkov tests
	$(PY) -m pytest -q -m "not slow and not real_data and not checkov"

test-unit: install ## unit tier: modules, scripts, Terraform; no server, no browser (tests/unit)
	$(PY) -m pytest -q tests/unit

test-service: install ## service tier: the functions' HTTP contract, in process and over real HTTP (tests/service)
	$(PY) -m pytest -q tests/service

test-e2e: install ## end-to-end tier: fake-gcs-server buckets, the daily loop, bundles, demo (tests/e2e)
	$(PY) -m pytest -q tests/e2e

test-browser: install browser ## browser tier: the forecast page in Chromium (tests/browser)
	$(PY) -m pytest -q tests/browser

$(SAMPLE):
	$(MAKE) --no-print-directory sample-data

sample-data: install ## write the deterministic synthetic sample to data/paris-sample.csv
	$(PY) -m velocast.train.sample --out $(SAMPLE)

train: install $(if $(filter $(SAMPLE),$(DATA)),$(SAMPLE)) ## train and publish: make train DATA=file.csv[.gz] STORE=folder|gs://bucket/prefix
	$(PY) -m velocast.train --data $(DATA) --store $(STORE) --models $(MODELS) \
		$(if $(wildcard bench/backtest.json),--backtest bench/backtest.json)

backtest: DATA = $(REAL_DATA)
backtest: install ## backtest at the year's transitions, 31 days from each origin, by horizon (5-12 min on one core): make backtest [DATA=file]; writes bench/backtest.{md,json,png}
	$(PY) -m velocast.train.backtest --data $(DATA) --models $(MODELS) --out bench/backtest

ingest: install ## fetch the newest counts from the portal into STORE: make ingest STORE=... SOURCE=https://opendata.paris.fr
	$(PY) -m velocast.ingest --store $(STORE) --source $(SOURCE)

retrain: install ## the daily loop: ingest, fit, compare with the served models, promote: make retrain STORE=... SOURCE=...
	$(PY) -m velocast.retrain --store $(STORE) --source $(SOURCE) --models $(MODELS) $(RETRAIN_ARGS)

report: install ## PNG of the served models' live accuracy per day and version (reports/live-accuracy.png)
	$(PY) -m velocast.train.report --store $(STORE) --out reports/live-accuracy.png

trainer-image: ## build and push the trainer image with Cloud Build, as the build service account (source staged in the sources bucket it may read)
	image="$$(terraform -chdir=terraform output -raw trainer_image)" && \
	gcloud builds submit --project "$$(echo "$$image" | cut -d/ -f2)" \
	  --config scripts/trainer-cloudbuild.yaml --substitutions "_IMAGE=$$image" \
	  --gcs-source-staging-dir "gs://$$(terraform -chdir=terraform output -raw source_bucket)/trainer-build" \
	  --service-account "projects/$$(echo "$$image" | cut -d/ -f2)/serviceAccounts/$$(terraform -chdir=terraform output -raw build_service_account)" .

models: install ## list the models published in STORE
	$(PY) -m velocast.models --store $(STORE)

serve: install ## run every function locally (classify :8080, regress :8000: Task.local_port; forecast page http://127.0.0.1:8000/app), training first if STORE is empty
	$(PY) scripts/local.py serve --store $(STORE)

demo: install ## start every function, send the old system's requests, print the answers (and the page URL), stop
	$(PY) scripts/local.py demo --store $(STORE)

# On make demo's own models (STORE, trained on the synthetic sample first if empty,
# as the demo does), so the README shows what a newcomer's run shows.
screenshot: install ## refresh docs/forecast-page.png and docs/forecast-page-phone.png on make demo's models (make test writes them to a temporary folder)
	$(if $(wildcard $(STORE)/registry),,$(MAKE) --no-print-directory train)
	PAGE_SCREENSHOT=docs PAGE_STORE=$(STORE) $(PY) -m pytest -q tests/browser/test_forecast_page_screenshot.py

api-spec: install ## regenerate shared/velocast/serving/static/openapi.json from openapi.yaml
	$(PY) scripts/api_spec.py

package: install ## build/<function> for every function: lean bundles and their zips
	$(PY) scripts/package.py

bench: install ## benchmark against the old design; writes bench/results.json
	$(PY) bench/run.py

bench-versions: install ## velocast at BEFORE (default 50915b8) vs this tree; writes bench/versions.json
	OMP_NUM_THREADS=1 $(PY) -m bench.versions $(if $(BEFORE),--before $(BEFORE))

attack: install ## issue 10's attacks before/after the hardening; writes bench/attack.json
	OMP_NUM_THREADS=1 $(PY) -m bench.attack

attack-transport: install ## issue 25's stalls and unread-body 4xx under load, before/after, models from STORE; writes bench/attack_transport.json
	OMP_NUM_THREADS=1 $(PY) -m bench.attack_transport --store $(STORE)

tf-fmt: ## format the Terraform files
	terraform fmt -recursive terraform

tf-check: install ## terraform fmt -check, the provider-schema check and checkov
	terraform fmt -check -recursive terraform
	$(PY) -m pytest -q tests/unit/test_terraform_schema.py
	scripts/checkov.sh

tf-schema: ## refresh terraform/schema/google-provider.json from the provider's npm bindings (needs npm)
	$(PYTHON) scripts/tf_schema.py

checkov: ## checkov on terraform/ and .github/workflows/ (own venv)
	scripts/checkov.sh
	scripts/checkov.sh --github-actions

plan: package ## terraform plan with $(TFVARS)
	scripts/cloud.sh plan

deploy: package ## package, then terraform init and apply with $(TFVARS)
	scripts/cloud.sh deploy

publish: install ## train on DATA and publish into the deployed models bucket
	scripts/cloud.sh publish

api-key: ## add a new random client API key to the secret (printed once)
	scripts/cloud.sh api-key

admin-key: ## set a new random admin key (printed once)
	scripts/cloud.sh admin-key

retire-keys: ## keep only the newest client API key (KEEP=N keeps the N newest)
	scripts/cloud.sh retire-keys

destroy: ## terraform destroy with $(TFVARS)
	scripts/cloud.sh destroy

clean: ## remove build outputs (not .venv, data or models)
	rm -rf build bench/out .pytest_cache
