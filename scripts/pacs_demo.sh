#!/usr/bin/env bash
# The PACS workflow end to end on the local services (README, "A PACS over DICOMweb"):
# phantom CT series go into the local Orthanc with STOW-RS, two Celery workers screen them
# over DICOMweb (QIDO-RS listing, WADO-RS retrieval), the verdicts land in PostgreSQL, and the
# DICOM results (SR + Parametric Maps) go back into each study with STOW-RS; QIDO-RS then
# lists what each study holds. Phantom-trained demo model: research and triage only.
#
#   scripts/pacs_demo.sh [SERIES (default 4)] [SEED (default 2026)]
#
# Needs `bash scripts/setup.sh` once. Everything it writes is under .scratch/pacs-demo/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
series="${1:-4}"
seed="${2:-2026}"
work=.scratch/pacs-demo
rm -rf "$work" && mkdir -p "$work"
# shellcheck disable=SC1091
source .venv/bin/activate
eval "$(scripts/services.sh start)"

export HEMOSCAN_BROKER_URL="$HEMOSCAN_TEST_BROKER_URL"
export HEMOSCAN_QUEUE="hemoscan-pacs-demo-$seed"
export HEMOSCAN_DATABASE_URL="$HEMOSCAN_TEST_DATABASE_URL"
export HEMOSCAN_S3_ENDPOINT_URL="$HEMOSCAN_TEST_S3_ENDPOINT_URL"
export HEMOSCAN_OUTPUT_LOCATION=s3://hemoscan-pacs-demo/results
export HEMOSCAN_PSEUDONYM_KEY="${HEMOSCAN_PSEUDONYM_KEY:-pacs-demo-pseudonym-secret-000001}"
export HEMOSCAN_DICOMWEB_USERNAME="$HEMOSCAN_TEST_ORTHANC_USER"
export HEMOSCAN_DICOMWEB_PASSWORD="$HEMOSCAN_TEST_ORTHANC_PASSWORD"
pacs="$HEMOSCAN_TEST_ORTHANC_URL/dicom-web"
job="pacs-demo-$seed-$(date +%s)"

python - <<'EOF'
from hemoscan.settings import load_settings
from hemoscan.storage import S3Store
S3Store("hemoscan-pacs-demo", "", load_settings()).create_bucket()
EOF
hemoscan db upgrade

echo "== $series phantom series (held-out generator variant, seed $seed) into the PACS (STOW-RS)"
hemoscan phantoms --series "$series" --seed "$seed" --variant heldout --out "$work/phantoms"
find "$work/phantoms" -name '*.dcm' -print0 | xargs -0 -n 64 dicomweb_client \
    -u "$HEMOSCAN_DICOMWEB_USERNAME" -p "$HEMOSCAN_DICOMWEB_PASSWORD" --url "$pacs" \
    store instances
echo "stored $(find "$work/phantoms" -name '*.dcm' | wc -l) instances"

echo "== two workers"
pids=()
for n in 1 2; do
    hemoscan worker --name "pacs$n@%h" --concurrency 1 > "$work/worker$n.log" 2>&1 &
    pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT

echo "== hemoscan scan dicomweb+$pacs --write-back"
hemoscan scan "dicomweb+$pacs" --job "$job" --study-description "*seed*$seed*" --write-back
hemoscan results "$job" --series

echo "== QIDO-RS: what each study holds now"
python - "$pacs" "$seed" <<'EOF'
import os
import sys
from collections import Counter

import requests

root, seed = sys.argv[1], sys.argv[2]
session = requests.Session()
session.auth = (os.environ["HEMOSCAN_DICOMWEB_USERNAME"], os.environ["HEMOSCAN_DICOMWEB_PASSWORD"])


def qido(path):
    answer = session.get(f"{root}/{path}", timeout=30)
    answer.raise_for_status()
    return answer.json() if answer.content else []


# The wildcard as itself: Orthanc takes %2A (what dicomweb-client sends) for a literal star.
for n, study in enumerate(qido(f"studies?StudyDescription=*seed*{seed}*"), 1):
    uid = study["0020000D"]["Value"][0]
    counts = Counter()
    for series in qido(f"studies/{uid}/series"):
        found = qido(f"studies/{uid}/series/{series['0020000E']['Value'][0]}/instances")
        counts[series["00080060"]["Value"][0]] += len(found)
    print(f"study {n}: " + ", ".join(f"{m} {c}" for m, c in sorted(counts.items())))
EOF
