#!/usr/bin/env bash
# The run contract, tried as a new user would (issue 15 "Done when"): one --db reused across
# a fresh run, a changed param, input, prompt and model, a kill -9 and resume, a budget stop and
# resume, failed rows and --retry-failed, and a model with no API key; then a map over a `use`d
# recipe: fresh, reused, a changed sub-recipe, a changed model, a kill -9 and resume, with the
# count of the tables it leaves in the database. Every step checks the
# answer against a fresh database's and the exit code against the README rule; the script exits
# 1 at the first wrong one. Usage: bench/contract_walkthrough.sh [rlm executable] (default: rlm).
set -u
RLM=${1:-rlm}
unset OPENAI_API_KEY
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
DB=state/run.duckdb  # in a directory that does not exist yet: rlm creates it

cat > count.rlm <<'EOF'
recipe count "Count the lines holding a keyword."
param kw: str = "bad"
input items: lines with path="items.txt"
chunk items -> pieces by lines(1)
map pieces -> hits: int with retries=1 """
  COUNT "{{ kw }}"
  {{ chunk.text }}
"""
reduce hits -> total: int by sql "SELECT sum(hits) FROM {{ input }}"
output total
EOF
write_items() {  # write_items N: N lines "item <i> bad|ok", every 4th bad
  python3 -c "import sys; n=int(sys.argv[1]); print(''.join(f'item {i} ' + ('bad' if i % 4 == 0 else 'ok') + chr(10) for i in range(n)), end='')" "$1" > items.txt
}

failed=0
field() { python3 -c "import json,sys; o=json.load(sys.stdin); print(eval(sys.argv[1], {}, o))" "$1"; }

# step NAME WANT_EXIT WANT_TOTAL ARGS...: run, check exit code and answer, print one line
step() {
  local name=$1 want_exit=$2 want_total=$3; shift 3
  "$RLM" run "$SPEC" --json -q "$@" > out.json 2> err.txt
  local code=$?
  local total calls status reasons
  total=$(field "outputs['total'] if outputs else None" < out.json 2>/dev/null || echo "?")
  calls=$(field "summary['calls'] if summary else None" < out.json 2>/dev/null || echo "?")
  status=$(field "status" < out.json 2>/dev/null || echo "no JSON")
  reasons=$(field "'; '.join(f'{k} {v[\"action\"]}' + ('' if v['action'] == 'reused' else f' ({v[\"reason\"]})') for k, v in (summary or {}).get('steps', {}).items() if k.startswith('map'))" < out.json 2>/dev/null)
  local verdict=ok
  if [[ $code != "$want_exit" || $total != "$want_total" ]]; then verdict=WRONG; failed=1; fi
  printf '%-34s exit %s (want %s)  total=%-4s (want %-4s) status=%-8s calls=%-4s %s\n' \
    "$name" "$code" "$want_exit" "$total" "$want_total" "$status" "$calls" "$verdict"
  [[ -n $reasons ]] && printf '%34s %s\n' "" "$reasons"
  if [[ $code != 0 ]]; then sed 's/^/                                   | /' err.txt | grep -v WARNING | head -4; fi
}
fresh_total() {  # the answer of a fresh database for the same arguments
  "$RLM" run "$SPEC" --json -q --db "fresh-$RANDOM.duckdb" "$@" 2>/dev/null | field "outputs['total']"
}

SPEC=count.rlm
write_items 100
step "1. fresh db" 0 25 --lm test --db $DB
step "2. same command again" 0 25 --lm test --db $DB
step "3. change param kw=ok" 0 "$(fresh_total --lm test -p kw=ok)" --lm test --db $DB -p kw=ok
write_items 40
step "4. change input (40 lines)" 0 "$(fresh_total --lm test)" --lm test --db $DB
sed -i 's/COUNT "{{ kw }}"/COUNT "{{ kw }}" (case matters)/' count.rlm
step "5. change prompt" 0 "$(fresh_total --lm test)" --lm test --db $DB
step "6. change model" 0 10 --lm test:seed=9 --db $DB

write_items 400
"$RLM" run count.rlm -q --lm test:delay=0.05 --concurrency 2 --db $DB > /dev/null 2>&1 &
pid=$!
for _ in $(seq 600); do  # until about a fifth of the map is recorded (the WAL grows)
  [[ $(stat -c %s $DB.wal 2>/dev/null || echo 0) -gt 60000 ]] && break
  sleep 0.2
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
last_status() { "$RLM" sql $DB "SELECT status FROM runs ORDER BY started_at DESC LIMIT 1 OFFSET $1" --format csv 2>/dev/null | tail -1; }
echo "7. kill -9 mid-map                  the killed run's row says: $(last_status 0), $(
  "$RLM" sql $DB "SELECT count(*) FROM lm_calls WHERE run_id = (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1)" --format csv | tail -1) calls recorded"
step "8. resume (same command)" 0 100 --lm test:delay=0.05 --concurrency 2 --db $DB
echo "                                   the killed run's row now says: $(last_status 1)"

write_items 120
step "9. budget stop (--max-calls 50)" 3 None --lm test --db $DB --max-calls 50
resume=$(grep '^resume with: ' err.txt | sed 's/^resume with: //')
echo "                                   hint: $resume"
eval "${resume/rlm run count.rlm/step \"10. resume with the hint\" 0 30}"

write_items 60
step "11. LM failing 20 % of calls" 4 "$(fresh_total --lm test:fail=0.2,seed=5)" --lm test:fail=0.2,seed=5 --db $DB
step "12. --retry-failed" 0 15 --lm test:fail=0.2,seed=5 --db $DB --retry-failed
step "13. no API key" 4 None --lm openai/gpt-4o-mini --db nokey.duckdb  # stops at the first call
# a map over a `use`d recipe: one sub-recipe run per file
cat > counter.rlm <<'EOF'
recipe counter "Count a word in one text."
param word: str = "bad"
input doc: text
chunk doc -> parts by lines(2)
map parts -> n: int """
  COUNT "{{ word }}"
  {{ chunk.text }}
"""
reduce n -> total: int by sql "SELECT sum(n) FROM {{ input }}"
output total
EOF
cat > perfile.rlm <<'EOF'
recipe perfile "Count per file with a sub-recipe."
input docs: files with path="docs"
use "counter.rlm" as counter
map docs -> counts: int using recipe counter
reduce counts -> total: int by sql "SELECT sum(counts) FROM {{ input }}"
output total
EOF
write_docs() {  # write_docs N: N files of 3 to 6 lines, file i has i % 4 "bad" lines
  rm -rf docs; mkdir docs
  python3 -c "import sys
for i in range(int(sys.argv[1])):
    open(f'docs/f{i:03}.txt', 'w').write(''.join(f'file {i} line {j} ' + ('bad' if j < i % 4 else 'ok') + chr(10) for j in range(3 + i % 4)))" "$1"
}
tables() {  # the user tables of the database (system tables left out)
  "$RLM" sql $UDB "SELECT count(*) FROM duckdb_tables() WHERE table_name NOT IN ('runs', 'lm_calls', 'step_status', 'failures', 'rlm_iterations', 'step_fingerprints')" --format csv 2>/dev/null | tail -1
}
SPEC=perfile.rlm
UDB=state/use.duckdb
write_docs 50
step "14. use: fresh db (50 files)" 0 73 --lm test --db $UDB
echo "                                   user tables in the db: $(tables) (one per step and sub-recipe step, not per file)"
step "15. use: same command again" 0 73 --lm test --db $UDB
sed -i 's/COUNT "{{ word }}"/COUNT "{{ word }}" (whole words)/' counter.rlm
step "16. use: change the sub-recipe" 0 "$(fresh_total --lm test)" --lm test --db $UDB
step "17. use: change model" 0 "$(fresh_total --lm test:seed=3)" --lm test:seed=3 --db $UDB
write_docs 200
"$RLM" run perfile.rlm -q --lm test:delay=0.05 --concurrency 2 --db $UDB > /dev/null 2>&1 &
pid=$!
calls_so_far() {  # this run's LM calls (its model), in a copy of the database (rlm holds the lock)
  cp $UDB probe.duckdb 2>/dev/null && { cp $UDB.wal probe.duckdb.wal 2>/dev/null || rm -f probe.duckdb.wal; }
  python3 -c "import duckdb; print(duckdb.connect('probe.duckdb').execute(\"SELECT count(*) FROM lm_calls WHERE model = 'test:delay=0.05'\").fetchone()[0])" 2>/dev/null || echo 0
}
for _ in $(seq 600); do  # until about a quarter of the 500 calls are made (the WAL is checkpointed)
  [[ $(calls_so_far) -ge 120 ]] && break
  sleep 0.2
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
echo "18. use: kill -9 mid-map              $("$RLM" sql $UDB "SELECT count(*) FROM counts" --format csv 2>/dev/null | tail -1) of 200 files done, $("$RLM" sql $UDB "SELECT count(*) FROM lm_calls WHERE model = 'test:delay=0.05'" --format csv 2>/dev/null | tail -1) calls recorded; user tables: $(tables)"
step "19. use: resume (same command)" 0 300 --lm test:delay=0.05 --concurrency 2 --db $UDB
echo "                                   user tables in the db: $(tables)"
step "20. use: LM failing 15 % of calls" 4 "$(fresh_total --lm test:fail=0.15,seed=1)" --lm test:fail=0.15,seed=1 --db $UDB
step "21. use: --retry-failed" 0 300 --lm test:fail=0.15,seed=1 --db $UDB --retry-failed
exit $failed
