. "$(dirname "$0")/lib.sh"
start_migd
start_faultd
MEM=$((32<<20))
fake_vmm a "$MEM" running 2000
fake_vmm b "$MEM" incoming 500
incoming b
postcopy_on_request a --max-bandwidth 4M
wait_until 30 both_active a b || fail "no postcopy"
migctl pause a >/dev/null
wait_until 30 both_paused a b || fail "pause"
migctl recover a tcp:127.0.0.1:1 --wait; echo "rc $?"
sleep 1
migctl status a | grep -E "^a:|peer|error|next"
migctl status b | grep -E "^b:|peer|listen|error|next"
