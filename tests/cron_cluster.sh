#!/usr/bin/env bash
# Tier 4: scheduled jobs with pg_cron (Debian's postgresql-MAJOR-cron, preloaded beside
# vault_ext). A job owned by a non-superuser role in vault_reader reads a secret and builds an
# Authorization header into a table; a job of a role without vault rights fails with
# "permission denied", and cron.job_run_details says so. pg_cron 1.4 runs at most once a
# minute, so the script waits for the next minute boundary (bounded at 150 s).
set -u
. "$(dirname "$0")/lib.sh"
cluster_init
if [ ! -f "$("$PG_CONFIG" --pkglibdir)/pg_cron.so" ]; then
  echo "pg_cron is not installed for this server (apt-get install postgresql-$("$PG_CONFIG" --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')-cron)"
  exit 1
fi

echo "# PostgreSQL: $("$PG_BINDIR/postgres" --version)"
new_cluster cron "shared_preload_libraries = 'vault_ext,pg_cron'" "cron.database_name = 'postgres'" \
  "cron.host = '$WORK'" "log_error_verbosity = default"
start cron || { cat "$(logfile cron)"; exit 1; }
sql cron "CREATE EXTENSION vault_ext; CREATE EXTENSION pg_cron" >/dev/null

# A job owner in vault_reader, another with no vault rights; both may only insert into outbox.
sql cron "
  CREATE ROLE billing_job LOGIN IN ROLE vault_reader;
  CREATE ROLE plain_job LOGIN;
  GRANT USAGE ON SCHEMA cron TO billing_job, plain_job;
  CREATE TABLE public.outbox (id bigserial PRIMARY KEY, job text, header text, at timestamptz DEFAULT now());
  GRANT INSERT ON public.outbox TO billing_job, plain_job;
  GRANT USAGE ON SEQUENCE public.outbox_id_seq TO billing_job, plain_job;
  SELECT vault.create_secret('sk-live-cronjob-0123456789', 'stripe_key');" >/dev/null

# Each role schedules its own job (jobs run as the role that scheduled them).
JOB_SQL="\$\$INSERT INTO public.outbox (job, header) SELECT current_user, 'Authorization: Bearer ' || vault.read_secret('stripe_key')\$\$"
PGUSER_AS=billing_job sql cron "SELECT cron.schedule('stripe-header', '* * * * *', $JOB_SQL)" >/dev/null
PGUSER_AS=plain_job sql cron "SELECT cron.schedule('plain-header', '* * * * *', $JOB_SQL)" >/dev/null
check "both jobs are scheduled under their own roles" "billing_job stripe-header,plain_job plain-header" \
  "$(sql cron "SELECT string_agg(username || ' ' || jobname, ',' ORDER BY username) FROM cron.job")"
check "billing_job is not a superuser" "f" "$(sql cron "SELECT rolsuper FROM pg_roles WHERE rolname = 'billing_job'")"

# Wait (at most 150 s) until each job has run once and finished.
DONE="SELECT count(DISTINCT jobid) FROM cron.job_run_details WHERE status IN ('succeeded', 'failed')"
t0=$(date +%s)
while [ "$(sql cron "$DONE")" != 2 ] && [ $(($(date +%s) - t0)) -lt 150 ]; do sleep 2; done
echo "# waited $(($(date +%s) - t0)) s for the jobs to run"

check "the vault_reader job succeeded" "succeeded" \
  "$(sql cron "SELECT string_agg(DISTINCT d.status, ',') FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = 'stripe-header'")"
check "it built the Authorization header from the secret" "billing_job Authorization: Bearer sk-live-cronjob-0123456789" \
  "$(sql cron "SELECT DISTINCT job || ' ' || header FROM public.outbox")"
check "the job without vault rights failed" "failed" \
  "$(sql cron "SELECT string_agg(DISTINCT d.status, ',') FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = 'plain-header'")"
check_contains "... with permission denied" "permission denied for schema vault" \
  "$(sql cron "SELECT string_agg(d.return_message, ',') FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = 'plain-header'")"
check "... and wrote nothing" "0" "$(sql cron "SELECT count(*) FROM public.outbox WHERE job = 'plain_job'")"
check_absent "no secret value in cron's run details" "sk-live-cronjob" \
  "$(sql cron "SELECT string_agg(coalesce(return_message, '') || command, ',') FROM cron.job_run_details")"
check_absent "no secret value in the server log" "sk-live-cronjob" "$(cat "$(logfile cron)")"

sql cron "SELECT cron.unschedule(jobid) FROM cron.job" >/dev/null
summary "cron tests"
