#!/usr/bin/env bash
# Restore drill on a large database: ROWS diary rows (default 1 000 000) over USERS users in a
# scratch database, then one backup-verification run against it (consistent pg_dump, upload to
# the Cloud Storage emulator, download, pg_restore into a scratch database, per-table counts and
# checksums, invariants). Prints the run's figures and drops the database.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ROWS=${ROWS:-1000000}
USERS=${USERS:-1000}
ensure_postgres
ensure_pg_tools
scripts/emulators.sh start gcs
eval "$(scripts/emulators.sh env)"

db="dta_wide_load_backup_$$"
work=$(mktemp -d)
trap 'psql "$PG_URL_BASE/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"; rm -rf "$work"' EXIT
ensure_database "$db"
export DATABASE_URL="$PG_URL_BASE/$db"

cargo build --locked -q -p migrate -p backup-verification
bin=$(cargo_bin_dir debug)
"$bin/migrate"

echo "generating $ROWS diary rows for $USERS users"
t0=$(date +%s.%N)
psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 -v rows="$ROWS" -v users="$USERS" <<'SQL'
-- Synthetic accounts that never log in: a unique placeholder for the e-mail blind index (the
-- auth function's is keyed), no address.
INSERT INTO users (id, email_lookup, password_hash)
SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, encode(sha256(convert_to('load-' || g || '@example.test', 'UTF8')), 'hex'), 'x'
FROM generate_series(1, :users) g;
-- One night per user and day; every CHECK holds: into_bed <= lights_out < final_awakening <= out_of_bed.
INSERT INTO diary_entries (id, user_id, night, zone, into_bed, into_bed_offset, lights_out, lights_out_offset,
    final_awakening, final_awakening_offset, out_of_bed, out_of_bed_offset, sol_min, awakenings, waso_min,
    tib_min, tst_min, twak_min, se_pct, nap_min, input)
SELECT gen_random_uuid(),
       ('00000000-0000-4000-8000-' || lpad((1 + g % :users)::text, 12, '0'))::uuid,
       date '2023-01-01' + g / :users, 'Europe/Berlin',
       t, 3600, t + make_interval(mins => 5 + g % 40), 3600,
       t + interval '7 hours' + make_interval(mins => g % 50), 3600,
       t + interval '7 hours 30 min' + make_interval(mins => g % 50), 3600,
       g % 60, g % 5, g % 45, 450, 360 - g % 60, 30, round((80 + (g % 200) / 10.0)::numeric, 1)::float8, 0,
       jsonb_build_object('zone', 'Europe/Berlin', 'quality', 1 + g % 5, 'naps', '[]'::jsonb,
                          'caffeine', jsonb_build_array(jsonb_build_object('at', '15:00', 'mg', 80)),
                          'comment', 'night ' || g)
FROM generate_series(0, :rows - 1) g,
     LATERAL (SELECT timestamptz '2022-12-31 22:00+00' + (g / :users) * interval '1 day' AS t) x;
ANALYZE;
SQL
t1=$(date +%s.%N)
size=$(psql "$DATABASE_URL" -qtAc "SELECT pg_size_pretty(pg_database_size(current_database()))")
python3 -c "print(f'generated in {$t1 - $t0:.1f} s; database size $size')"

BACKUP_BUCKET=load-drill BACKUP_CREATE_BUCKET=true BACKUP_WORK_DIR="$work" LOG_FORMAT=json \
  JOB_LOGICAL_DATE=2000-01-01 \
  "$bin/backup-verification" >"$work/log.json" 2>&1 || { cat "$work/log.json"; exit 1; }
t2=$(date +%s.%N)
python3 - "$work/log.json" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    if "job_report" in entry:
        r = json.loads(entry["job_report"])
        f = r["figures"]
        print(f"outcome {r['outcome']}: {f.get('tables')} tables, {f.get('rows')} rows, dump {f.get('bytes', 0) / 1e6:.1f} MB")
        print(f"  backup (pg_dump + source figures, one snapshot) {f.get('dump_secs', 0):.1f} s")
        print(f"  upload {f.get('upload_secs', 0):.1f} s, download {f.get('download_secs', 0):.1f} s, restore {f.get('restore_secs') or 0:.1f} s, compare + invariants {f.get('compare_secs', 0):.1f} s")
        print(f"  failures: {r['failures']}")
PY
python3 -c "print(f'job wall time {$t2 - $t1:.1f} s')"
