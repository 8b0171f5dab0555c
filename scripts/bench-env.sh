# The limits a benchmarked Hearth runs with: the load generator is one address
# playing thousands of people who send, claim and connect far faster than people do.
# Sourced by bench.sh and bench-ab.sh, so every server they start is held to the same.
BENCH_LIMITS=(
  HEARTH_SEND_RATE=1000000 HEARTH_SEND_BURST=1000000 HEARTH_CLAIMS_PER_MINUTE=1000000
  HEARTH_MAX_CONNS_PER_IP=100000 HEARTH_ROOM_CAPACITY=100000
  HEARTH_API_PER_MINUTE=1000000 HEARTH_ROOM_SEATS_PER_ADDRESS=100000
  HEARTH_MAX_HTTP_CONNECTIONS_PER_IP=100000 HEARTH_CHANNELS_PER_HOUR=1000000 HEARTH_MAX_TABS_PER_PERSON=100000
)
