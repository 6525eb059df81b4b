#!/usr/bin/env bash
# extra-pcaps.sh OUTDIR [SCALE=1] [SEED=1]
#
# An extension of the shared traffic lab (shared/lab/make-pcaps.sh): builds its own
# closed lab of network namespaces (olab-sw, olab-server, olab-client1..3,
# olab-attacker, olab-t1..tN), runs NEW benign and attack scenarios between them
# (everyday failure behaviour of benign clients, benign clients that meet many 403/404
# answers, more nmap scan types, host sweeps, variants of brute force, slowloris, DNS
# tunnels and floods), captures each to
# OUTDIR/<scenario>.pcap on the switch port(s) facing the server(s), and writes
# labels.csv, hosts.csv and (with the shared pcapflows.py) flows.csv in the shared
# lab's format.  Everything is torn down on exit.  See README.md beside this file.
#
# Isolation: no interface of the lab is in (or linked to) the root namespace, no
# namespace has a default route, every generator is bounded by a count and wrapped in
# `timeout`, every server process lives at most SVC_LIFETIME s.
set -Eeuo pipefail

SELF=$(readlink -f "$0")
HERE=$(dirname "$SELF")
LAB_DIR=${LAB_DIR:-$HERE/../../../../shared/lab}
SVC_LIFETIME=3600
PY=${PY:-$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || true)}
LOCK=/run/olab-extra-pcaps.lock

log()  { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
warn() { log "WARN: $*"; echo "$(date +%s) $*" >> "${OUT:-/tmp}/warnings.txt"; }
die()  { echo "extra-pcaps.sh: $*" >&2; exit 1; }
nsx()  { local ns=$1; shift; ip netns exec "$ns" "$@"; }
now()  { date +%s.%6N; }
csvq() { local s=${1//\"/\"\"}; printf '"%s"' "$s"; }
ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }
msleep() { local m=$1; ((m < 0)) && m=0; sleep "$((m / 1000)).$(printf '%03d' $((m % 1000)))"; }
rsleep() { sleep "$(( RANDOM % ($1 + 1) )).$(printf '%03d' $((RANDOM % 1000)))"; }
# jsleep MS PCT: sleep MS milliseconds +-PCT % (RANDOM of this shell, no subshell)
jsleep() { local m=$1 pct=$2; ((pct > 0)) && m=$(( m + (m * ((RANDOM % (2 * pct + 1)) - pct)) / 100 )); msleep "$m"; }
n_of()   { awk -v f="$1" -v n="$2" 'BEGIN { v = int(f * n + 0.5); print (v < 1 ? 1 : v) }'; }
is_tls_port() { case $1 in 443|4443|8443|9443) return 0 ;; *) return 1 ;; esac; }

# ===================================================================== subcommands
# These run *inside* a lab namespace (extra-pcaps.sh __name args...), always under
# `timeout`, and each is bounded by a count as well.

# retry a refused service with exponential backoff, then use it a few times
sub_retry_client() {       # URL SEED BASE_MS FACTOR CAP_MS JITTER_PCT AFTER
    local url=$1 seed=$2 d=$3 f100=$((10#${4/./})) cap=$5 jit=$6 after=$7 i ok=0
    RANDOM=$seed
    for ((i = 0; i < 40; i++)); do
        if curl -sS -g -o /dev/null -m 3 "$url"; then ok=1; break; fi
        jsleep "$d" "$jit"
        d=$(( d * f100 / 100 )); ((d > cap)) && d=$cap
    done
    ((ok)) || return 0
    for ((i = 0; i < after; i++)); do
        rsleep 1
        curl -sS -g -o /dev/null -m 5 "$url" || true
    done
}

# poll a URL every INTERVAL ms (10 % jitter) for SECS s
sub_poll_client() {        # URL SECS INTERVAL_MS SEED
    local url=$1 secs=$2 iv=$3 i=0
    RANDOM=$4; SECONDS=0
    while ((i < 400 && SECONDS < secs)); do
        i=$((i + 1))
        curl -sS -g -o /dev/null -m 2 -H 'Accept: application/json' "$url" || true
        jsleep "$iv" 10
    done
}

# try the configured ports in turn until one answers, ROUNDS times
sub_fallback_client() {    # ROUNDS SEED SLEEP_MS V6PCT
    local rounds=$1 slp=$3 v6=$4 i p host scheme k
    RANDOM=$2
    local dead=($PF_DEAD_PORTS)
    for ((i = 0; i < rounds; i++)); do
        host=$IP4_SERVER; ((RANDOM % 100 < v6)) && host="[$IP6_SERVER]"
        for p in "${dead[@]}"; do
            scheme=http; is_tls_port "$p" && scheme=https
            curl -sS -g -k -o /dev/null -m 3 "$scheme://$host:$p/" && break || true
        done
        if [[ $PF_LIVE == https ]]; then
            curl -sS -g -k -o /dev/null -m 5 "https://$host:$TLS_PORT/" || true
            for ((k = 0; k < RANDOM % 3; k++)); do curl -sS -g -k -o /dev/null -m 5 "https://$host:$TLS_PORT/api/status" || true; done
        else
            curl -sS -g -o /dev/null -m 5 "http://$host:$HTTP_PORT/" || true
            for ((k = 0; k < RANDOM % 3; k++)); do curl -sS -g -o /dev/null -m 5 "http://$host:$HTTP_PORT/api/status" || true; done
        fi
        jsleep "$slp" 30
    done
}

# dig a dead resolver first, then the working one (bounded by count and time)
sub_dnsdown_dig() {        # N SECS SEED WORKING DEAD...
    local n=$1 secs=$2 good=$4 i name qt
    RANDOM=$3; shift 4
    local dead=("$@") names=(www mail intranet files git wiki vpn db) types=(A A A AAAA MX TXT)
    SECONDS=0
    for ((i = 0; i < n && SECONDS < secs; i++)); do
        name=${names[RANDOM % ${#names[@]}]}.$DNS_ZONE; qt=${types[RANDOM % ${#types[@]}]}
        dig +time="$DD_DIG_TIME" +tries="$DD_DIG_TRIES" "@${dead[RANDOM % ${#dead[@]}]}" "$name" "$qt" > /dev/null || true
        dig +time=2 +tries=1 "@$good" "$name" "$qt" > /dev/null || true
        jsleep "$DD_SLEEP_MS" 40
    done
}

# glibc resolver lookups; this namespace's resolv.conf lists a dead resolver first
sub_getent_client() {      # N SECS SEED
    local n=$1 secs=$2 i
    RANDOM=$3
    local names=(www mail intranet files git wiki vpn db printer ntp)
    SECONDS=0
    for ((i = 0; i < n && SECONDS < secs; i++)); do
        getent ahosts "${names[RANDOM % ${#names[@]}]}.$DNS_ZONE" > /dev/null || true
        jsleep "$DD_SLEEP_MS" 40
    done
}

# curl over TLS: HTTP/1.1 single and keep-alive, HTTP/2 sequential and multiplexed
sub_tls_client() {         # N SEED V6PCT
    local n=$1 v6=$3 i k m base tls args sizes
    RANDOM=$2
    sizes=($HTTP_FILE_SIZES)
    for ((i = 0; i < n; i++)); do
        base="https://$IP4_SERVER:$TLS_PORT"; ((RANDOM % 100 < v6)) && base="https://[$IP6_SERVER]:$TLS_PORT"
        case $TLS_VERSION in
            1.2) tls=(--tlsv1.2 --tls-max 1.2) ;;
            1.3) tls=(--tlsv1.3) ;;
            *)   if ((RANDOM % 2)); then tls=(--tlsv1.2 --tls-max 1.2); else tls=(--tlsv1.3); fi ;;
        esac
        args=()
        m=$(( RANDOM % TLS_MAX_URLS + 1 ))
        for ((k = 0; k < m; k++)); do
            case $((RANDOM % 4)) in
                0) args+=(-o /dev/null "$base/") ;;
                1) args+=(-o /dev/null "$base/static/app.js") ;;
                2) args+=(-o /dev/null "$base/files/f${sizes[RANDOM % ${#sizes[@]}]}.bin") ;;
                3) args+=(-o /dev/null "$base/api/items?page=$((RANDOM % 20))") ;;
            esac
        done
        if ((RANDOM % 100 < TLS_H2_PCT)); then
            if ((m > 2 && RANDOM % 2)); then
                curl -sS -g -k "${tls[@]}" --http2 -Z --parallel-max 4 -m 20 "${args[@]}" || true
            else
                curl -sS -g -k "${tls[@]}" --http2 -m 20 "${args[@]}" || true
            fi
        else
            curl -sS -g -k "${tls[@]}" --http1.1 -m 20 "${args[@]}" || true
        fi
        jsleep "$TLS_SLEEP_MS" 50
    done
}

# bursts of short HTTP connections, like a batch job
sub_burst_client() {       # BURSTS CONNS MODE SEED
    local bursts=$1 conns=$2 mode=$3 b k args base="http://$IP4_SERVER:$HTTP_PORT"
    RANDOM=$4
    for ((b = 0; b < bursts; b++)); do
        case $mode in
            loop) for ((k = 0; k < conns; k++)); do
                      curl -sS -o /dev/null -m 3 "$base/api/items?id=$((RANDOM % 5000))" || true
                  done ;;
            multi|parallel)
                  args=()
                  for ((k = 0; k < conns; k++)); do args+=(-o /dev/null "$base/api/items?id=$((RANDOM % 5000))"); done
                  if [[ $mode == multi ]]; then
                      curl -sS -m 60 -H 'Connection: close' "${args[@]}" || true
                  else
                      curl -sS -m 60 -Z --parallel-max "$SB_PARALLEL" -H 'Connection: close' "${args[@]}" || true
                  fi ;;
        esac
        jsleep "$SB_PAUSE_MS" 50
    done
}

# HTTP brute force: MODE basic (GET with Basic auth -> 401) or form (POST -> 200 error page);
# REUSE attempts share one TCP connection (curl --next)
sub_brute() {              # MODE N SEED URL SLEEP_MS REUSE
    local mode=$1 n=$2 url=$4 slp=$5 reuse=$6 i k args u p
    RANDOM=$3
    local users=(admin root administrator test user guest oracle postgres ubuntu support info webmaster)
    local pws=(123456 password admin qwerty letmein welcome changeme secret 12345678 iloveyou)
    for ((i = 0; i < n; i += reuse)); do
        args=()
        for ((k = 0; k < reuse && i + k < n; k++)); do
            ((k > 0)) && args+=(--next)
            u=${users[RANDOM % ${#users[@]}]}; p=${pws[RANDOM % ${#pws[@]}]}$((RANDOM % 100))
            if [[ $mode == basic ]]; then
                args+=(-sS -g -k -o /dev/null -m 3 -u "$u:$p" "$url")
            else
                args+=(-sS -g -k -o /dev/null -m 3 -X POST -d "username=$u&password=$p&remember=1" "$url")
            fi
        done
        curl "${args[@]}" || true
        ((slp > 0)) && msleep "$slp"
    done
    return 0
}

# a scripted ping sweep
sub_ping_sweep() { local h; for h in "$@"; do ping -c 1 -W 1 "$h" > /dev/null || true; done; return 0; }

if [[ ${1:-} == __* ]]; then
    sub=${1#__}; shift
    "sub_${sub}" "$@"
    exit $?
fi

# ===================================================================== arguments, checks
if [[ $# -lt 1 || ${1:-} == -h || ${1:-} == --help ]]; then
    echo "usage: $0 OUTDIR [SCALE=1] [SEED=1]   (LAB_DIR=path/to/shared/lab, default $HERE/../../../../shared/lab)" >&2
    exit 2
fi
SCALE=${2:-1}
SEED=${3:-1}
[[ $SEED =~ ^[0-9]+$ ]] || die "SEED must be a non-negative integer, got '$SEED'"
[[ $SCALE =~ ^[0-9]*\.?[0-9]+$ ]] || die "SCALE must be a positive number, got '$SCALE'"
[[ $EUID -eq 0 ]] || die "must run as root (network namespaces, tcpdump, hping3)"
[[ -n $PY ]] || die "python3 not found"
[[ -d $LAB_DIR ]] || die "shared lab not found at LAB_DIR=$LAB_DIR (set LAB_DIR to shared/lab)"
LAB_DIR=$(cd "$LAB_DIR" && pwd)
for f in labtools.py pcapflows.py; do [[ -f $LAB_DIR/$f ]] || die "missing $LAB_DIR/$f"; done
missing=()
for t in ip nft tcpdump nmap hping3 nginx dnsmasq curl dig ssh sshd ssh-keygen ethtool capinfos \
         timeout ping flock openssl getent ss awk; do
    command -v "$t" > /dev/null || [[ -x /usr/sbin/$t ]] || missing+=("$t")
done
((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (Debian: apt-get install nftables tcpdump nmap hping3 nginx dnsmasq-base dnsutils curl openssh-server openssh-client iputils-ping ethtool tshark openssl)"
curl --version | grep -qw HTTP2 || die "this curl has no HTTP/2 support"
nginx -V 2>&1 | grep -q http_v2_module || die "this nginx has no http_v2_module"
export PATH=$PATH:/usr/sbin:/sbin

OUT=$(mkdir -p "$1" && cd "$1" && pwd) || die "cannot create OUTDIR $1"
exec 9> "$LOCK"
flock -n 9 || die "another extra-pcaps.sh run holds $LOCK"

# ===================================================================== teardown
NS_ALL=()
BG_PIDS=()
WORK=""
teardown() {
    local ns pid
    disown -a 2>/dev/null || true               # no "Terminated" notices for our own jobs
    for pid in "${BG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # every olab-* namespace is ours (our prefix; the shared lab uses lab-*)
    local all=("${NS_ALL[@]}")
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^olab-' || true); do all+=("$ns"); done
    for ns in "${all[@]}"; do
        ns_exists "$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
    done
    sleep 1
    for ns in "${all[@]}"; do
        ns_exists "$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf /etc/netns/olab-* 2>/dev/null || true
    rmdir /etc/netns 2>/dev/null || true       # only if nothing else uses it
    [[ -n ${WORK:-} && -d ${WORK:-} ]] && rm -rf "$WORK"
    return 0
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
teardown                   # leftovers of an earlier, killed run of this script
WORK=$(mktemp -d /tmp/olab-work.XXXXXX)

# previous artefacts of this script only
rm -f "$OUT"/*.pcap "$OUT"/{labels,flows,summary,hosts,capture_stats}.csv \
      "$OUT"/{params.json,versions.txt,capinfos.txt,warnings.txt,run.log,README.md} 2>/dev/null || true

set -a
eval "$("$PY" "$HERE/extraparams.py" "$SEED" "$SCALE" "$OUT/params.json")"
set +a
export PY SELF LAB_DIR HERE
exec > >(tee -a "$OUT/run.log") 2>&1
RUN_T0=$(date +%s)
log "seed=$SEED scale=$SCALE out=$OUT net4=$NET4 net6=$NET6 lab=$LAB_DIR"

TGTS=($TARGETS)
HOSTS=(server client1 client2 client3 attacker "${TGTS[@]}")
NS_ALL=(olab-sw)
for h in "${HOSTS[@]}"; do NS_ALL+=("olab-$h"); done
for h in "${HOSTS[@]}"; do   # the lab's own addresses only: refuse anything else
    v=IP4_${h^^}; [[ ${!v} =~ ^198\.1[89]\.[0-9]+\.[0-9]+$ ]] || die "address $v=${!v} outside 198.18.0.0/15"
    v=IP6_${h^^}; [[ ${!v} == fd00:1ab:* ]] || die "address $v=${!v} outside fd00:1ab::/32"
done
ip4() { local v=IP4_${1^^}; echo "${!v}"; }
ip6() { local v=IP6_${1^^}; echo "${!v}"; }
CLIENT_IPS="$IP4_CLIENT1|$IP4_CLIENT2|$IP4_CLIENT3|$IP6_CLIENT1|$IP6_CLIENT2|$IP6_CLIENT3"
SERVER_IPS="$IP4_SERVER|$IP6_SERVER"
ATTACKER_IPS="$IP4_ATTACKER|$IP6_ATTACKER"
TARGET_IPS=""
for h in "${TGTS[@]}"; do TARGET_IPS+="|$(ip4 "$h")|$(ip6 "$h")"; done

# ===================================================================== topology
setup_lab() {
    local h ns role ll mac
    ip netns add olab-sw
    nsx olab-sw ip link set lo up
    nsx olab-sw sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    nsx olab-sw ip link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    nsx olab-sw ip link set br0 up
    for h in "${HOSTS[@]}"; do
        ns=olab-$h
        ip netns add "$ns"
        mkdir -p "/etc/netns/$ns"
        printf 'nameserver %s\noptions timeout:1 attempts:1\n' "$IP4_SERVER" > "/etc/netns/$ns/resolv.conf"
        printf '127.0.0.1 localhost\n%s server.%s\n' "$IP4_SERVER" "$DNS_ZONE" > "/etc/netns/$ns/hosts"
        nsx "$ns" ip link set lo up
        nsx "$ns" sysctl -qw net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.all.accept_ra=0 \
            net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.default.dad_transmits=0
        ip link add eth0 netns "$ns" type veth peer name "sw-$h" netns olab-sw
        nsx olab-sw ip link set "sw-$h" master br0
        nsx "$ns" ethtool -K eth0 tx off tso off gso off gro off > /dev/null 2>&1 || warn "ethtool $ns"
        nsx olab-sw ethtool -K "sw-$h" tx off tso off gso off gro off > /dev/null 2>&1 || warn "ethtool sw-$h"
        mac=MAC_${h^^}; nsx "$ns" ip link set eth0 address "${!mac}"
        nsx "$ns" ip addr add "$(ip4 "$h")/24" dev eth0
        nsx "$ns" ip -6 addr add "$(ip6 "$h")/64" dev eth0 nodad
        nsx "$ns" ip link set eth0 up
        nsx olab-sw ip link set "sw-$h" up
        if nsx "$ns" ip route show default | grep -q . || nsx "$ns" ip -6 route show default | grep -q .; then
            die "unexpected default route in $ns"
        fi
    done
    sleep 1
    printf 'role,namespace,ipv4,ipv6,ipv6_link_local,mac\n' > "$OUT/hosts.csv"
    for h in "${HOSTS[@]}"; do
        case $h in attacker) role=attacker ;; server) role=server ;; client*) role=benign_client ;; *) role=target ;; esac
        ll=$(nsx "olab-$h" ip -6 -o addr show dev eth0 scope link | awk '{print $4}' | cut -d/ -f1 | head -1)
        mac=MAC_${h^^}
        printf '%s,olab-%s,%s,%s,%s,%s\n' "$role" "$h" "$(ip4 "$h")" "$(ip6 "$h")" "$ll" "${!mac}" >> "$OUT/hosts.csv"
    done
}

APP_PID=""
app_start() {   # the restartable application server (its own nginx on APP_PORT)
    # started directly (not via the nsx function), so that $! is timeout itself, which
    # passes SIGTERM on to nginx
    ip netns exec olab-server timeout "$SVC_LIFETIME" nginx -c "$WORK/srv/app.conf" -e "$WORK/srv/app-error.log" &
    APP_PID=$!
    local i
    for i in $(seq 50); do
        nsx olab-server ss -Hltn "sport = :$APP_PORT" | grep -q . && return 0
        sleep 0.1
    done
    warn "app server did not start"
}
app_stop() {
    [[ -n $APP_PID ]] || return 0
    kill -TERM "$APP_PID" 2>/dev/null || true
    wait "$APP_PID" 2>/dev/null || true
    APP_PID=""
    local i
    for i in $(seq 50); do nsx olab-server ss -Hltn "sport = :$APP_PORT" | grep -q . || return 0; sleep 0.1; done
    warn "app server still listening after stop"
}

start_services() {
    local s=$WORK/srv sz mb n i h
    mkdir -p "$s/www/files" "$s/www/static" "$s/tmp" "$s/app" "$s/tls" /run/sshd
    chmod 711 "$WORK"                  # nginx's workers (nobody) read the content ...
    chown nobody "$s/tmp"              # ... and buffer request bodies here
    head -c 3000 /dev/urandom | base64 > "$s/www/index.html"
    head -c 40000 /dev/urandom | base64 > "$s/www/static/app.js"
    for sz in $HTTP_FILE_SIZES; do head -c "$sz" /dev/urandom > "$s/www/files/f$sz.bin"; done
    for mb in $BULK_SIZES_MB; do head -c "$((mb * 1000000))" /dev/urandom > "$s/www/files/bulk${mb}m.bin"; done
    head -c 800 /dev/urandom | base64 > "$s/app/index.html"
    # --- self-signed certificate made now, in this run's temp dir
    local kt=${TLS_KEY%%:*} ka=${TLS_KEY#*:} kopt
    if [[ $kt == rsa ]]; then kopt=(-newkey "rsa:$ka"); else kopt=(-newkey ec -pkeyopt "ec_paramgen_curve:$ka"); fi
    openssl req -x509 "${kopt[@]}" -nodes -days 2 -subj "/CN=server.$DNS_ZONE" \
        -addext "subjectAltName=DNS:server.$DNS_ZONE,IP:$IP4_SERVER,IP:$IP6_SERVER" \
        -keyout "$s/tls/key.pem" -out "$s/tls/cert.pem" > /dev/null 2>&1 || die "openssl could not make the certificate"
    printf 'admin:%s\n' "$(openssl passwd -apr1 "$(head -c 12 /dev/urandom | base64)")" > "$s/htpasswd"
    # --- benign_http_errors: its site, and a user whose password its clients know
    "$PY" "$HERE/olabtools.py" site "$s/www" $((SUBSEED + 110)) "$HE_FORBIDDEN_DIR" "$HE_AUTH_DIR" \
        "$HE_API_PREFIX" "$HE_API_IDS" "$HE_API_HIT_PCT" "$HE_ROBOTS" "$HE_POSTS" "$HE_IMAGES" || die "olabtools.py site failed"
    HE_PASS=$(openssl rand -hex 6)
    printf '%s:%s\n' "$HE_AUTH_USER" "$(openssl passwd -apr1 "$HE_PASS")" > "$s/htpasswd-he"
    cat > "$s/nginx.conf" <<EOF
worker_processes 1;
pid $s/nginx.pid;
error_log $s/nginx-error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    access_log $s/nginx-access.log;
    client_body_temp_path $s/tmp/body; proxy_temp_path $s/tmp/proxy;
    fastcgi_temp_path $s/tmp/fcgi; uwsgi_temp_path $s/tmp/uwsgi; scgi_temp_path $s/tmp/scgi;
    sendfile on; keepalive_timeout ${KEEPALIVE_TIMEOUT}s; keepalive_requests 1000;
    client_header_timeout 60s; client_body_timeout 60s;
    server {
        listen $IP4_SERVER:$HTTP_PORT;
        listen [$IP6_SERVER]:$HTTP_PORT;
        listen $IP4_SERVER:$TLS_PORT ssl http2;
        listen [$IP6_SERVER]:$TLS_PORT ssl http2;
        ssl_certificate $s/tls/cert.pem;
        ssl_certificate_key $s/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $s/www;
        client_max_body_size 200m;
        location = /healthz { return 200 "ok\n"; }
        location = $BR_401_PATH { auth_basic "restricted"; auth_basic_user_file $s/htpasswd; }
        location = $BR_FORM_PATH {
            default_type text/html;
            return 200 "<html><body><form method=post><p class=error>Invalid username or password.</p><input name=username><input name=password type=password></form></body></html>\n";
        }
        # bodies are read in full (the upstream on loopback is not captured): a plain
        # "return" would answer before the body and stall HTTP/2 uploads
        location /upload { proxy_pass http://127.0.0.1:$INTERNAL_PORT; }
        location /submit { proxy_pass http://127.0.0.1:$INTERNAL_PORT; }
        location /api/ { default_type application/json; return 200 '{"status":"ok","items":[1,2,3]}\n'; }
        # benign_http_errors (olabtools.py site made the files): $HE_FORBIDDEN_DIR is a
        # directory that the workers cannot read (403), as is one file; absent files are 404
        location = $HE_DENY_PATH { deny all; }
        location ^~ $HE_GONE_PREFIX { return 404; }
        location ^~ $HE_AUTH_DIR { auth_basic "members only"; auth_basic_user_file $s/htpasswd-he; }
        location $HE_API_PREFIX/ { default_type application/json; try_files \$uri.json =404; }
        location = $HE_API_PREFIX { proxy_pass http://127.0.0.1:$INTERNAL_PORT; }
    }
    server {
        listen 127.0.0.1:$INTERNAL_PORT;
        client_max_body_size 200m;
        location /upload { return 201 "stored\n"; }
        location / { return 200 "saved\n"; }
    }
}
EOF
    cat > "$s/app.conf" <<EOF
worker_processes 1;
pid $s/app.pid;
error_log $s/app-error.log warn;
daemon off;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    access_log $s/app-access.log;
    client_body_temp_path $s/tmp/abody; proxy_temp_path $s/tmp/aproxy;
    fastcgi_temp_path $s/tmp/afcgi; uwsgi_temp_path $s/tmp/auwsgi; scgi_temp_path $s/tmp/ascgi;
    keepalive_timeout 10s;
    server {
        listen $IP4_SERVER:$APP_PORT;
        listen [$IP6_SERVER]:$APP_PORT;
        root $s/app;
        location = /healthz { return 200 "ok\n"; }
        location /api/ { default_type application/json; return 200 '{"service":"app","status":"up"}\n'; }
    }
}
EOF
    ip netns exec olab-server timeout "$SVC_LIFETIME" nginx -c "$s/nginx.conf" -e "$s/nginx-error.log" &
    app_start
    # --- DNS: dnsmasq answering only the local zone, never forwarding
    local hr=()
    for n in www mail intranet files printer git wiki ntp vpn db; do
        hr+=("--host-record=$n.$DNS_ZONE,$IP4_SERVER,$IP6_SERVER")
    done
    ip netns exec olab-server timeout "$SVC_LIFETIME" dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll \
        --bind-interfaces --listen-address="$IP4_SERVER,$IP6_SERVER" --port=53 --user=root \
        --pid-file="$s/dnsmasq.pid" --local="/$DNS_ZONE/" --domain="$DNS_ZONE" "${hr[@]}" \
        --host-record="server.$DNS_ZONE,$IP4_SERVER,$IP6_SERVER" \
        --mx-host="$DNS_ZONE,mail.$DNS_ZONE,10" --txt-record="$DNS_ZONE,v=spf1 mx -all" \
        --srv-host="_ldap._tcp.$DNS_ZONE,db.$DNS_ZONE,389" \
        --log-queries --log-facility="$s/dnsmasq.log" &
    # --- sshd with throw-away keys
    ssh-keygen -q -t ed25519 -N '' -f "$s/ssh_host_ed25519_key"
    ssh-keygen -q -t ed25519 -N '' -f "$s/client_key"
    cp "$s/client_key.pub" "$s/authorized_keys"
    cat > "$s/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress $IP4_SERVER
ListenAddress $IP6_SERVER
HostKey $s/ssh_host_ed25519_key
PidFile $s/sshd.pid
AuthorizedKeysFile $s/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
ClientAliveInterval $SSHD_CLIENT_ALIVE
EOF
    ip netns exec olab-server timeout "$SVC_LIFETIME" /usr/sbin/sshd -D -f "$s/sshd_config" -E "$s/sshd.log" &
    # --- the shared keepalive echo server
    ip netns exec olab-server timeout "$SVC_LIFETIME" "$PY" "$LAB_DIR/labtools.py" ka-server "$IP4_SERVER" "$IP6_SERVER" "$KA_PORT" "$SVC_LIFETIME" &
    # --- the small target hosts: a few open TCP ports each; one drops DNS silently
    local tports=($TARGET_PORTS) p
    for i in "${!TGTS[@]}"; do
        h=${TGTS[$i]}
        [[ ${tports[$i]} == - ]] && continue
        for p in ${tports[$i]//,/ }; do
            ip netns exec "olab-$h" timeout "$SVC_LIFETIME" "$PY" "$LAB_DIR/labtools.py" ka-server "$(ip4 "$h")" "$(ip6 "$h")" "$p" "$SVC_LIFETIME" &
        done
    done
    nsx "olab-$DEAD_DNS_SILENT" nft -f - <<'EOF'
table inet olab {
    chain input {
        type filter hook input priority 0; policy accept;
        udp dport 53 drop
        tcp dport 53 drop
    }
}
EOF
    sleep 2
    for h in client1 client2 client3 attacker; do
        nsx "olab-$h" ping -c 1 -W 2 "$IP4_SERVER" > /dev/null || warn "no v4 reachability from $h"
        nsx "olab-$h" ping -6 -c 1 -W 2 "$IP6_SERVER" > /dev/null || warn "no v6 reachability from $h"
    done
    for h in "${TGTS[@]}"; do nsx olab-client1 ping -c 1 -W 2 "$(ip4 "$h")" > /dev/null || warn "no v4 reachability of $h"; done
    nsx olab-client1 curl -sS -o /dev/null -m 5 "http://$IP4_SERVER:$HTTP_PORT/" || warn "nginx (http) not answering"
    nsx olab-client1 curl -sS -k -o /dev/null -m 5 --http2 "https://$IP4_SERVER:$TLS_PORT/" || warn "nginx (tls) not answering"
    nsx olab-client1 curl -sS -o /dev/null -m 5 "http://$IP4_SERVER:$APP_PORT/healthz" || warn "app not answering"
    nsx olab-client1 dig +short +tries=1 +time=2 "@$IP4_SERVER" "www.$DNS_ZONE" | grep -q . || warn "dnsmasq not answering"
    sleep 6   # let the link-up NDP/MLD chatter and the NUD probes it causes finish
}

flush_neigh() {
    local h
    for h in "${HOSTS[@]}"; do nsx "olab-$h" ip neigh flush all > /dev/null 2>&1 || true; done
}

SSH_OPTS=()
ssh_opts() {
    SSH_OPTS=(-i "$WORK/srv/client_key" -p "$SSH_PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
              -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR)
}

# ===================================================================== capture + labels
# cap_start NAME HOST...: one tcpdump per switch port facing HOST (default: the server).
# The servers and targets never talk to each other, so a unicast frame crosses exactly
# one of these ports; flooded broadcast/multicast copies are dropped when merging.
CAP_PIDS=(); CAP_HOSTS=(); CAP_NAME=""
cap_start() {
    CAP_NAME=$1; shift
    CAP_HOSTS=("${@:-server}")
    CAP_PIDS=()
    local h f lg i
    mkdir -p "$WORK/cap"
    for h in "${CAP_HOSTS[@]}"; do
        f="$WORK/cap/$CAP_NAME-$h.pcap"; lg="$WORK/cap/$CAP_NAME-$h.log"
        rm -f "$f"
        ip netns exec olab-sw timeout 900 tcpdump -i "sw-$h" -s 0 -n -U -B 32768 -Z root -w "$f" 2> "$lg" &
        CAP_PIDS+=($!)
    done
    for h in "${CAP_HOSTS[@]}"; do
        for i in $(seq 100); do grep -q "listening on" "$WORK/cap/$CAP_NAME-$h.log" 2>/dev/null && break; sleep 0.1; done
    done
    sleep 0.5
}
cap_stop() {
    sleep 2   # late replies, FINs, RSTs
    local pid h lg cap=0 rec=0 drop=0 c r d merged="" dup=0
    for pid in "${CAP_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${CAP_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for h in "${CAP_HOSTS[@]}"; do
        lg="$WORK/cap/$CAP_NAME-$h.log"
        c=$(awk '/packets captured/{print $1}' "$lg"); r=$(awk '/received by filter/{print $1}' "$lg")
        d=$(awk '/dropped by kernel/{print $1}' "$lg")
        cap=$((cap + ${c:-0})); rec=$((rec + ${r:-0})); drop=$((drop + ${d:-0}))
    done
    if ((${#CAP_HOSTS[@]} == 1)); then
        mv "$WORK/cap/$CAP_NAME-${CAP_HOSTS[0]}.pcap" "$OUT/$CAP_NAME.pcap"
    else
        merged=$("$PY" "$HERE/olabtools.py" pcapmerge "$OUT/$CAP_NAME.pcap" \
                 $(for h in "${CAP_HOSTS[@]}"; do echo "$WORK/cap/$CAP_NAME-$h.pcap"; done)) || warn "merge $CAP_NAME"
        dup=${merged#* }
        rm -f "$WORK/cap/$CAP_NAME-"*.pcap
    fi
    echo "$CAP_NAME.pcap,$cap,$rec,$drop,$(IFS='|'; echo "${CAP_HOSTS[*]}"),$dup" >> "$OUT/capture_stats.csv"
    ((drop == 0)) || warn "$CAP_NAME: tcpdump dropped $drop packets"
    log "captured $CAP_NAME: $cap packets on ${CAP_HOSTS[*]} (dropped $drop, flooded copies removed $dup)"
}
label() {   # label PCAP SCENARIO LABEL SRC DST START END TOOL COMMAND
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$(csvq "$9")" >> "$OUT/labels.csv"
}
# one attack from olab-attacker, and its window: attack PCAP LABEL TOOL TIMEOUT cmd...
# (targets: $ATTACK_DST, the server's addresses unless a scenario says otherwise)
ATTACK_DST=$SERVER_IPS
attack() {
    local pcap=$1 lab=$2 tool=$3 to=$4; shift 4
    local t0 t1 rc=0
    log "attack $lab: $*"
    t0=$(now)
    nsx olab-attacker timeout "$to" "$@" >> "$WORK/attack-$lab.log" 2>&1 || rc=$?
    t1=$(now)
    ((rc == 0 || rc == 1)) || warn "$lab exited $rc: $*"
    label "$pcap" "${pcap%.pcap}" "$lab" "$ATTACKER_IPS" "$ATTACK_DST" "$t0" "$t1" "$tool" "$*"
}
bg() { local ns=$1 to=$2; shift 2; ip netns exec "$ns" timeout "$to" "$@" > /dev/null 2>&1 & BG_PIDS+=($!); }
wait_bg() { local j; for j in "${BG_PIDS[@]}"; do wait "$j" 2>/dev/null || true; done; BG_PIDS=(); }
benign_window() {   # benign_window PCAP SCENARIO START END TOOL DESCR [DST]
    label "$1" "$2" benign "$CLIENT_IPS" "${7:-$SERVER_IPS}" "$3" "$4" "$5" "$6"
}
sleep_until() { local t=$1; while ((SECONDS < t)); do sleep 0.2; done; }

# ===================================================================== benign scenarios
sc_benign_restart_retry() {
    local p=benign_restart_retry.pcap t0 t1 u4="http://$IP4_SERVER:$APP_PORT/api/status" u6="http://[$IP6_SERVER]:$APP_PORT/api/status"
    local cr=(--retry "$RR_CURL_RETRY" --retry-connrefused --retry-max-time 60)
    ((RR_CURL_DELAY > 0)) && cr+=(--retry-delay "$RR_CURL_DELAY")
    app_stop                                   # the service is down when the clients start
    t0=$(now)
    bg olab-client1 90 "$SELF" __retry_client "$u4" $((SUBSEED + 1)) "$RR_BACKOFF_BASE_MS" "$RR_BACKOFF_FACTOR" \
        "$RR_BACKOFF_CAP_MS" "$RR_JITTER_PCT" "$RR_AFTER_REQS"
    rsleep 1
    bg olab-client2 90 curl -sS -g -o /dev/null -m 80 "${cr[@]}" "$u4"
    rsleep 1
    bg olab-client3 90 "$SELF" __retry_client "$([[ $RR_V6_CLIENT == 3 ]] && echo "$u6" || echo "$u4")" $((SUBSEED + 3)) \
        $((RR_BACKOFF_BASE_MS * 2)) "$RR_BACKOFF_FACTOR" "$RR_BACKOFF_CAP_MS" "$RR_JITTER_PCT" $((RR_AFTER_REQS / 2 + 1))
    sleep "$RR_DOWN_SECS"
    app_start
    wait_bg; t1=$(now)
    benign_window $p benign_restart_retry "$t0" "$t1" curl "app :$APP_PORT down ${RR_DOWN_SECS}s; c1/c3 retry with backoff base ${RR_BACKOFF_BASE_MS}ms x$RR_BACKOFF_FACTOR cap ${RR_BACKOFF_CAP_MS}ms jitter $RR_JITTER_PCT%, then $RR_AFTER_REQS GETs; c2 curl ${cr[*]}"
}
sc_benign_rolling_poll() {
    local p=benign_rolling_poll.pcap t0 t1 i ivs=($RP_INTERVALS_MS) url
    t0=$(now); SECONDS=0
    for ((i = 1; i <= RP_CLIENTS; i++)); do
        url="http://$IP4_SERVER:$APP_PORT$RP_PATH"; ((i == 3)) && url="http://[$IP6_SERVER]:$APP_PORT$RP_PATH"
        bg "olab-client$i" $((RP_SECS + 20)) "$SELF" __poll_client "$url" "$RP_SECS" "${ivs[i - 1]}" $((SUBSEED + 10 + i))
    done
    sleep_until "$RP_DOWN1_AT"; app_stop; sleep "$RP_DOWN1_SECS"; app_start
    sleep_until "$RP_DOWN2_AT"; app_stop; sleep "$RP_DOWN2_SECS"; app_start
    wait_bg; t1=$(now)
    benign_window $p benign_rolling_poll "$t0" "$t1" curl "$RP_CLIENTS clients poll :$APP_PORT$RP_PATH every ${ivs[*]:0:RP_CLIENTS} ms for ${RP_SECS}s; restarts at ${RP_DOWN1_AT}s (${RP_DOWN1_SECS}s down) and ${RP_DOWN2_AT}s (${RP_DOWN2_SECS}s down)"
}
sc_benign_port_fallback() {
    local p=benign_port_fallback.pcap t0 t1 i
    t0=$(now)
    for ((i = 1; i <= PF_CLIENTS; i++)); do
        bg "olab-client$i" 120 "$SELF" __fallback_client "$PF_ROUNDS" $((SUBSEED + 20 + i)) "$PF_SLEEP_MS" "$PF_V6_PCT"
        rsleep 1
    done
    wait_bg; t1=$(now)
    benign_window $p benign_port_fallback "$t0" "$t1" curl "$PF_CLIENTS clients x$PF_ROUNDS rounds: ports $PF_DEAD_PORTS (refused) then $PF_LIVE live; ${PF_SLEEP_MS}ms apart, $PF_V6_PCT% IPv6"
}
sc_benign_dns_down() {
    local p=benign_dns_down.pcap t0 t1 first second
    local refuse4 silent4 refuse6 silent6
    refuse4=$(ip4 "$DEAD_DNS_REFUSE"); silent4=$(ip4 "$DEAD_DNS_SILENT")
    refuse6=$(ip6 "$DEAD_DNS_REFUSE"); silent6=$(ip6 "$DEAD_DNS_SILENT")
    if [[ $DD_FIRST_DEAD == refuse ]]; then first=$refuse4; second=$silent4; else first=$silent4; second=$refuse4; fi
    # client2's glibc resolver: a stale resolver first, then (sometimes) the other, then the working one
    {
        echo "nameserver $first"
        if ((SUBSEED % 2)); then echo "nameserver $second"; fi
        echo "nameserver $IP4_SERVER"
        echo "options timeout:1 attempts:$DD_RES_ATTEMPTS"
    } > /etc/netns/olab-client2/resolv.conf
    t0=$(now)
    bg olab-client1 60 "$SELF" __dnsdown_dig "$DD_LOOKUPS" "$DD_SECS" $((SUBSEED + 31)) "$IP4_SERVER" "$refuse4" "$silent4"
    bg olab-client2 60 "$SELF" __getent_client "$DD_LOOKUPS" "$DD_SECS" $((SUBSEED + 32))
    bg olab-client3 60 "$SELF" __dnsdown_dig $((DD_LOOKUPS / 2 + 1)) "$DD_SECS" $((SUBSEED + 33)) "$IP6_SERVER" "$refuse6" "$silent6"
    wait_bg; t1=$(now)
    printf 'nameserver %s\noptions timeout:1 attempts:1\n' "$IP4_SERVER" > /etc/netns/olab-client2/resolv.conf
    benign_window $p benign_dns_down "$t0" "$t1" dig/getent \
        "dead resolvers $DEAD_DNS_REFUSE (port unreachable) and $DEAD_DNS_SILENT (silent): c1 dig +time=$DD_DIG_TIME +tries=$DD_DIG_TRIES dead then server; c2 getent ahosts (resolv.conf dead first, attempts:$DD_RES_ATTEMPTS); c3 the same over IPv6; <=$DD_LOOKUPS lookups, <=${DD_SECS}s" \
        "$SERVER_IPS|$refuse4|$silent4|$refuse6|$silent6"
}
sc_benign_health_probes() {
    local p=benign_health_probes.pcap t0 t1
    t0=$(now); SECONDS=0
    bg olab-client1 $((HP_SECS + 20)) "$PY" "$HERE/olabtools.py" probes "$IP4_SERVER" "$HP_SECS" $((SUBSEED + 41)) "$HP_UA" $HP_PROBES
    ((HP_PROBERS > 1)) && bg olab-client2 $((HP_SECS + 20)) "$PY" "$HERE/olabtools.py" probes "$IP6_SERVER" "$HP_SECS" $((SUBSEED + 42)) "$HP_UA" $HP_PROBES
    sleep_until "$HP_DOWN_AT"; app_stop; sleep "$HP_DOWN_SECS"; app_start
    wait_bg; t1=$(now)
    benign_window $p benign_health_probes "$t0" "$t1" python "$HP_PROBERS prober(s) ($HP_UA) for ${HP_SECS}s: $HP_PROBES (kind:port[:path]@period s); app :$APP_PORT down from ${HP_DOWN_AT}s for ${HP_DOWN_SECS}s"
}
sc_benign_tls_http2() {
    local p=benign_tls_http2.pcap t0 t1 i
    t0=$(now)
    for i in 1 2 3; do bg "olab-client$i" 180 "$SELF" __tls_client "$TLS_REQS" $((SUBSEED + 50 + i)) "$TLS_V6_PCT"; rsleep 1; done
    wait_bg; t1=$(now)
    benign_window $p benign_tls_http2 "$t0" "$t1" curl "3 clients x$TLS_REQS curl -k https :$TLS_PORT (TLS $TLS_VERSION, $TLS_KEY cert), HTTP/2 $TLS_H2_PCT% (--http2, some -Z), else --http1.1, 1-$TLS_MAX_URLS URLs per connection, $TLS_V6_PCT% IPv6"
}
bulk_job() {   # bulk_job CLIENT dir:proto:MB:limit
    local c=$1 dir proto mb lim base url to
    IFS=: read -r dir proto mb lim <<< "$2"
    if [[ $proto == https ]]; then base="https://$IP4_SERVER:$TLS_PORT"; else base="http://$IP4_SERVER:$HTTP_PORT"; fi
    local opt=(-sS -k -o /dev/null)
    to=60; [[ $lim != 0 ]] && { opt+=(--limit-rate "$lim"); to=$(( mb / ${lim%M} + 40 )); }
    if [[ $dir == down ]]; then
        bg "$c" "$to" curl "${opt[@]}" -m "$to" "$base/files/bulk${mb}m.bin"
    else
        bg "$c" "$to" bash -c 'head -c "$1" /dev/urandom | curl "${@:2}"' _ "$((mb * 1000000))" "${opt[@]}" -m "$to" \
            -X POST -H 'Content-Type: application/octet-stream' --data-binary @- "$base/upload"
    fi
}
sc_benign_bulk() {
    local p=benign_bulk.pcap t0 t1 j k=0
    t0=$(now)
    for j in $BULK_JOBS; do
        bulk_job "olab-client$(( k % 3 + 1 ))" "$j"
        k=$((k + 1))
        ((k % BULK_PARALLEL == 0)) && wait_bg
        rsleep 1
    done
    wait_bg; t1=$(now)
    benign_window $p benign_bulk "$t0" "$t1" curl "jobs (dir:proto:MB:limit-rate) $BULK_JOBS, $BULK_PARALLEL at a time"
}
sc_benign_short_bursts() {
    local p=benign_short_bursts.pcap t0 t1 i n=($SB_CONNS) m=($SB_MODES)
    t0=$(now)
    for i in 1 2 3; do
        bg "olab-client$i" 180 "$SELF" __burst_client "$SB_BURSTS" "${n[i - 1]}" "${m[i - 1]}" $((SUBSEED + 60 + i))
        rsleep 2
    done
    wait_bg; t1=$(now)
    benign_window $p benign_short_bursts "$t0" "$t1" curl "3 clients x$SB_BURSTS bursts of ${n[*]} short connections (modes ${m[*]}; parallel $SB_PARALLEL), ${SB_PAUSE_MS}ms pauses"
}
sc_benign_idle_keepalive() {
    local p=benign_idle_keepalive.pcap t0 t1 i idle=($IK_KA_IDLE) alive=($IK_SSH_ALIVE) dst
    ssh_opts
    t0=$(now)
    for ((i = 0; i < IK_KA_SESSIONS; i++)); do
        dst=$IP4_SERVER; ((i == 1)) && dst=$IP6_SERVER
        bg "olab-client$((i % 3 + 1))" $((IK_SECS + 20)) "$PY" "$LAB_DIR/labtools.py" ka-client "$dst" "$KA_PORT" "$IK_SECS" "${idle[i]}"
        rsleep 2
    done
    for ((i = 0; i < IK_SSH_SESSIONS; i++)); do
        dst=$IP4_SERVER; ((i == 1)) && dst=$IP6_SERVER
        bg "olab-client$((3 - i))" $((IK_SECS + 20)) ssh "${SSH_OPTS[@]}" -o ServerAliveInterval="${alive[i]}" \
            -o ServerAliveCountMax=3 "root@$dst" "sleep $((IK_SECS - 5))"
        rsleep 2
    done
    wait_bg; t1=$(now)
    benign_window $p benign_idle_keepalive "$t0" "$t1" python/ssh "$IK_KA_SESSIONS idle TCP :$KA_PORT with SO_KEEPALIVE idle ${idle[*]:0:IK_KA_SESSIONS}s; $IK_SSH_SESSIONS idle ssh (ServerAliveInterval ${alive[*]:0:IK_SSH_SESSIONS}s, sshd ClientAliveInterval $SSHD_CLIENT_ALIVE) for ~${IK_SECS}s"
}
# benign clients of a site with many 403/404 answers: browsers, a link checker, pollers,
# API clients and a user who mistypes a password (olabtools.py webclient)
sc_benign_http_errors() {
    local p=benign_http_errors.pcap t0 t1 pe kind c v cm ka host i=0 np=0 opts pp=($HE_POLL_PATHS) pm=($HE_POLL_MS)
    local site=(forbidden_dir="$HE_FORBIDDEN_DIR" gone_prefix="$HE_GONE_PREFIX" posts="$HE_POSTS" images="$HE_IMAGES")
    t0=$(now)
    for pe in $HE_PERSONAS; do
        IFS=: read -r kind c v cm <<< "$pe"
        host=$IP4_SERVER; [[ $v == 6 ]] && host=$IP6_SERVER
        ka=0; [[ $cm == ka ]] && ka=1
        i=$((i + 1))
        case $kind in
            browser) opts=("$HE_PAGES" conns="$HE_BROWSER_CONNS" burst="$HE_BURST" spread_ms="$HE_BURST_SPREAD_MS"
                           think_ms="$HE_THINK_MS" missing_pct="$HE_MISSING_PCT" deploy_broken_pct="$HE_DEPLOY_BROKEN_PCT"
                           broken_link_pct="$HE_BROKEN_LINK_PCT" favicon_pct="$HE_FAVICON_PCT" post_pct="$HE_POST_PCT" "${site[@]}") ;;
            crawler) opts=("$HE_CRAWL_URLS" delay_ms="$HE_CRAWL_DELAY_MS" head_pct="$HE_CRAWL_HEAD_PCT" keepalive=$ka
                           close_hdr="$HE_CONN_CLOSE_HDR" broken_pct="$HE_CRAWL_BROKEN_PCT" "${site[@]}") ;;
            poller)  opts=("$HE_POLLS" interval_ms="${pm[np]}" paths="${pp[np]}" keepalive=$ka close_hdr="$HE_CONN_CLOSE_HDR")
                     np=$((np + 1)) ;;
            api)     opts=("$HE_API_REQS" prefix="$HE_API_PREFIX" sleep_ms="$HE_API_SLEEP_MS" keepalive=$ka
                           close_hdr="$HE_CONN_CLOSE_HDR" head_pct="$HE_API_HEAD_PCT" post_pct="$HE_API_POST_PCT"
                           batch="$HE_API_BATCH" ids="$HE_API_IDS") ;;
            login)   opts=("$HE_LOGINS" auth_dir="$HE_AUTH_DIR" user="$HE_AUTH_USER" password="$HE_PASS" typing_ms="$HE_LOGIN_TYPING_MS"
                           after="$HE_LOGIN_AFTER" two_typos_pct="$HE_LOGIN_TWO_TYPOS_PCT") ;;
        esac
        # N SECS SEED OPTIONS; its status counts go to the server's log dir (KEEP_LOGS)
        ip netns exec "olab-client$c" timeout $((HE_SECS + 30)) "$PY" "$HERE/olabtools.py" webclient "$kind" "$host" "$HTTP_PORT" \
            "${opts[0]}" "$HE_SECS" $((SUBSEED + 120 + i)) "${opts[@]:1}" > "$WORK/srv/he-$i-$kind.log" 2>&1 &
        BG_PIDS+=($!)
        msleep $(( (SUBSEED / i) % 700 ))
    done
    wait_bg; t1=$(now)
    benign_window $p benign_http_errors "$t0" "$t1" python "clients $HE_PERSONAS (kind:client:ipver:conn) on :$HTTP_PORT for <=${HE_SECS}s: browsers x$HE_PAGES page loads (bursts of $HE_BURST over $HE_BROWSER_CONNS keep-alive conns within ${HE_BURST_SPREAD_MS}ms, think ${HE_THINK_MS}ms, missing $HE_MISSING_PCT%, unreadable assets $HE_DEPLOY_BROKEN_PCT%, broken links $HE_BROKEN_LINK_PCT%); link checker x$HE_CRAWL_URLS (${HE_CRAWL_DELAY_MS}ms, HEAD $HE_CRAWL_HEAD_PCT%, broken $HE_CRAWL_BROKEN_PCT%); pollers x$HE_POLLS of $HE_POLL_PATHS every $HE_POLL_MS ms; API x$HE_API_REQS $HE_API_PREFIX/<id> ($HE_API_HIT_PCT% exist); login x$HE_LOGINS into $HE_AUTH_DIR with a mistyped password first"
}

# ===================================================================== attacks
# atk_NAME PCAP FRACTION (1 in the attack's own scenario, MIX_FRACTION in mixed_failures)
atk_scan() {   # atk_scan TYPE PCAP FRAC
    local t=$1 pcap=$2 frac=$3 key=${1^^} runs r v opts flag
    case $t in scan_syn) flag=-sS ;; scan_connect) flag=-sT ;; scan_udp) flag=-sU ;;
               scan_ack) flag=-sA ;; scan_fin) flag=-sF ;; scan_xmas) flag=-sX ;; esac
    v=${key}_RUNS; runs=${!v}; [[ $frac == 1 ]] || runs=1
    for ((r = 1; r <= runs; r++)); do
        v=${key}_$r; opts=${!v}
        attack "$pcap" "$t" nmap 150 nmap -n -Pn "$flag" $opts --host-timeout 120s "$IP4_SERVER"
        ((r < runs)) && rsleep 2
    done
    if [[ $frac == 1 && $SCAN_V6 == "$t" ]]; then
        rsleep 2
        attack "$pcap" "$t" nmap 150 nmap -6 -n -Pn "$flag" $SCAN_V6_OPTS --host-timeout 120s "$IP6_SERVER"
    fi
}
atk_scan_sweep() {
    local pcap=$1 h hosts4=("$IP4_SERVER") sn
    for h in "${TGTS[@]}"; do hosts4+=("$(ip4 "$h")"); done
    if [[ $SW_SN_SCOPE == net ]]; then sn=("$SW_SN_NET"); else sn=("${hosts4[@]}"); fi
    ATTACK_DST="$SERVER_IPS$TARGET_IPS"
    attack "$pcap" scan_sweep nmap 120 nmap -n -sn --send-ip --disable-arp-ping $SW_PING_PROBES $SW_TIMING --max-retries 1 "${sn[@]}"
    rsleep 2
    attack "$pcap" scan_sweep nmap 120 nmap -n -Pn -sS $SW_TIMING --max-retries 1 -p "$SW_PORTS" "${hosts4[@]}"
    if [[ $SW_CONNECT_PORTS != - ]]; then
        rsleep 2
        attack "$pcap" scan_sweep nmap 120 nmap -n -Pn -sT $SW_TIMING --max-retries 1 -p "$SW_CONNECT_PORTS" "${hosts4[@]}"
    fi
    if ((SW_V6)); then
        local hosts6=("$IP6_SERVER"); for h in "${TGTS[@]}"; do hosts6+=("$(ip6 "$h")"); done
        rsleep 2
        attack "$pcap" scan_sweep nmap 120 nmap -6 -n -Pn -sS $SW_TIMING --max-retries 1 -p "$SW_PORTS" "${hosts6[@]}"
    fi
    if ((SW_SCRIPTED)); then
        rsleep 2
        attack "$pcap" scan_sweep ping 60 "$SELF" __ping_sweep "${hosts4[@]}"
    fi
    ATTACK_DST=$SERVER_IPS
}
atk_http_bruteforce() {
    local pcap=$1 frac=$2 furl
    attack "$pcap" http_bruteforce curl 240 "$SELF" __brute basic "$(n_of "$frac" "$BR_401_REQS")" $((SUBSEED + 71)) \
        "http://$IP4_SERVER:$HTTP_PORT$BR_401_PATH" "$BR_401_SLEEP_MS" "$BR_401_REUSE"
    rsleep 2
    if ((BR_FORM_TLS)); then furl="https://$IP4_SERVER:$TLS_PORT$BR_FORM_PATH"; else furl="http://$IP4_SERVER:$HTTP_PORT$BR_FORM_PATH"; fi
    attack "$pcap" http_bruteforce curl 240 "$SELF" __brute form "$(n_of "$frac" "$BR_FORM_REQS")" $((SUBSEED + 72)) \
        "$furl" "$BR_FORM_SLEEP_MS" "$BR_FORM_REUSE"
}
atk_slowloris() {
    local pcap=$1 frac=$2 secs
    secs=$SL_SECS; [[ $frac == 1 ]] || secs=$(n_of 0.6 "$SL_SECS")
    if [[ $SL_VARIANT == shared ]]; then
        attack "$pcap" slowloris python-slowloris $((secs + 30)) "$PY" "$LAB_DIR/labtools.py" slowloris "$IP4_SERVER" "$HTTP_PORT" \
            "$(n_of "$frac" "$SL_CONNS")" "$secs" "$SL_INTERVAL"
    else
        attack "$pcap" slowloris python-slowloris-ramp $((secs + 30)) "$PY" "$HERE/olabtools.py" slowloris "$IP4_SERVER" "$HTTP_PORT" \
            "$(n_of "$frac" "$SL_CONNS")" "$secs" "$SL_INTERVAL" "$SL_RAMP_SECS" $((SUBSEED + 81))
    fi
    [[ $frac == 1 ]] || return 0
    rsleep 2
    attack "$pcap" slowloris python-slowpost $((RUDY_SECS + 30)) "$PY" "$HERE/olabtools.py" slowpost "$IP4_SERVER" "$HTTP_PORT" \
        "$RUDY_PATH" "$RUDY_CONNS" "$RUDY_SECS" "$RUDY_INTERVAL" "$RUDY_CHUNK" "$RUDY_CLEN" $((SUBSEED + 82))
}
atk_dns_tunnel() {
    local pcap=$1 frac=$2 run enc ll nl qt n slp ps ipv srv k=0
    for run in $TUNNEL_RUNS; do
        IFS=: read -r enc ll nl qt n slp ps ipv <<< "$run"
        srv=$IP4_SERVER; [[ $ipv == 6 ]] && srv=$IP6_SERVER
        ((k++ > 0)) && rsleep 2
        attack "$pcap" dns_tunnel python-dns 200 "$PY" "$HERE/olabtools.py" dnstunnel "$srv" "$TUNNEL_DOMAIN" \
            "$(n_of "$frac" "$n")" "$enc" "$ll" "$nl" "$qt" "$slp" $((SUBSEED + 90 + k)) "$ps"
        [[ $frac == 1 ]] || break
    done
}
flood_runs() {   # flood_runs PCAP LABEL FRAC RUNS -- hping3 options (the interval and count are added)
    local pcap=$1 lab=$2 frac=$3 runs=$4 run iv n k=0; shift 5
    for run in $runs; do
        iv=${run%%:*}; n=${run#*:}
        ((k++ > 0)) && rsleep 2
        attack "$pcap" "$lab" hping3 90 hping3 -q -I eth0 "$@" -i "$iv" -c "$(n_of "$frac" "$n")" "$IP4_SERVER"
        [[ $frac == 1 ]] || break
    done
}
atk_flood_syn() {
    local port=$FS_PORT data=()
    [[ $FS_PORT_MODE == incr ]] && port="++$FS_PORT"
    ((FS_DATA > 0)) && data=(-d "$FS_DATA")
    flood_runs "$1" flood_syn "$2" "$FS_RUNS" -- -S -p "$port" -w "$FS_WIN" "${data[@]}"
}
atk_flood_udp() { flood_runs "$1" flood_udp "$2" "$FU_RUNS" -- --udp -p "$FU_PORT" -d "$FU_SIZE"; }
atk_flood_icmp() {
    flood_runs "$1" flood_icmp "$2" "$FI_RUNS" -- --icmp -d "$FI_SIZE"
    if [[ $2 == 1 ]] && ((FI_PING_FLOOD)); then
        rsleep 2
        attack "$1" flood_icmp ping 60 ping -q -f -c "$(n_of "$SCALE" 5000)" -w 30 -s "$FI_SIZE" "$IP4_SERVER"
    fi
}
run_attack() {   # run_attack NAME PCAP FRAC
    case $1 in
        scan_syn|scan_connect|scan_udp|scan_ack|scan_fin|scan_xmas) atk_scan "$1" "$2" "$3" ;;
        *) "atk_$1" "$2" "$3" ;;
    esac
}

# ===================================================================== mixed_failures
sc_mixed_failures() {
    local p=mixed_failures.pcap t0 t1 a
    t0=$(now); SECONDS=0
    bg olab-client1 $((MIX_SECS + 20)) "$SELF" __poll_client "http://$IP4_SERVER:$APP_PORT$RP_PATH" "$MIX_SECS" 1000 $((SUBSEED + 101))
    bg olab-client2 $((MIX_SECS + 20)) "$PY" "$HERE/olabtools.py" probes "$IP4_SERVER" "$MIX_SECS" $((SUBSEED + 102)) "$HP_UA" $HP_PROBES
    bg olab-client3 $((MIX_SECS + 20)) bash -c '"$SELF" __fallback_client 4 "$1" "$PF_SLEEP_MS" 0; "$SELF" __burst_client 1 "$2" multi "$1"; "$SELF" __tls_client 6 "$1" 0' \
        _ $((SUBSEED + 103)) "$(n_of 0.5 "${SB_CONNS%% *}")"
    sleep "$MIX_START_DELAY"
    for a in $MIX_ATTACKS; do
        run_attack "$a" "$p" "$MIX_FRACTION"
        if ((SECONDS < MIX_SECS / 2)) && [[ -n $APP_PID ]]; then   # one restart of the app while it goes on
            app_stop; sleep 3; app_start
        fi
        rsleep 4
    done
    [[ -n $APP_PID ]] || app_start
    wait_bg; t1=$(now)
    benign_window $p mixed_background "$t0" "$t1" mixed "c1 polls :$APP_PORT (one restart), c2 health probes, c3 port fallback + burst + TLS, for ${MIX_SECS}s"
}

# ===================================================================== main
write_readme() {
    {
        echo "# Extra lab pcaps (seed $SEED, scale $SCALE)"
        echo
        echo "Made by models/train/lab/extra-pcaps.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ) in network namespaces only,"
        echo "in the format of the shared lab (shared/lab): hosts.csv, labels.csv, flows.csv (by the shared pcapflows.py)."
        echo "Every randomised parameter: params.json; tool versions: versions.txt; tcpdump counters: capture_stats.csv."
        echo
        echo "Label rule: a flow is an attack iff one endpoint is an attacker address (hosts.csv); its type is the attack"
        echo "window in labels.csv holding its first packet. Benign clients never attack; the attacker does nothing but attack."
        echo
        echo "| pcap | packets | bytes (wire) | file bytes | flows | benign flows | attack flows | duration s |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|"
        awk -F, 'NR > 1 {printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $6, $7, $8, $9}' "$OUT/summary.csv"
    } > "$OUT/README.md"
}
versions() {
    {
        echo "kernel: $(uname -r)"
        echo "iproute2: $(ip -V)"
        echo "nftables: $(nft --version)"
        echo "tcpdump: $(tcpdump --version 2>&1 | head -2 | tr '\n' ' ')"
        echo "nmap: $(nmap --version | head -1)"
        echo "hping3: $(hping3 --version 2>&1 | head -1)"
        echo "nginx: $(nginx -v 2>&1)"
        echo "openssl: $(openssl version)"
        echo "dnsmasq: $(dnsmasq --version | head -1)"
        echo "curl: $(curl --version | head -1)"
        echo "dig: $(dig -v 2>&1)"
        echo "openssh: $(ssh -V 2>&1)"
        echo "capinfos: $(capinfos --version | head -1)"
        echo "python: $("$PY" --version)"
    } > "$OUT/versions.txt"
}

versions
printf 'pcap,scenario,label,src_ips,dst_ips,start_epoch,end_epoch,tool,command\n' > "$OUT/labels.csv"
printf 'pcap,packets_captured,packets_received_by_filter,packets_dropped_by_kernel,ports,flooded_copies_removed\n' > "$OUT/capture_stats.csv"
RANDOM=$((SUBSEED % 32768))
setup_lab
start_services
log "lab up ($(( $(date +%s) - RUN_T0 )) s); order: $SCENARIO_ORDER"
ORDER=$SCENARIO_ORDER
if [[ -n ${ONLY:-} ]]; then    # development: ONLY="scen1 scen2" runs just those (in the seed's order)
    ORDER=""; for sc in $SCENARIO_ORDER; do [[ " $ONLY " == *" $sc "* ]] && ORDER+="$sc "; done
    [[ -n $ORDER ]] || die "ONLY=$ONLY names no scenario of: $SCENARIO_ORDER"
fi
for sc in $ORDER; do
    log "=== scenario $sc"
    [[ -n $APP_PID ]] || app_start
    flush_neigh
    case $sc in
        scan_sweep)      cap_start "$sc" server "${TGTS[@]}" ;;
        benign_dns_down) cap_start "$sc" server "$DEAD_DNS_REFUSE" "$DEAD_DNS_SILENT" ;;
        *)               cap_start "$sc" server ;;
    esac
    case $sc in
        benign_*|mixed_*) "sc_$sc" || warn "scenario $sc failed" ;;
        *)                { rsleep 2; run_attack "$sc" "$sc.pcap" 1; } || warn "scenario $sc failed" ;;
    esac
    cap_stop
done
log "post-processing"
"$PY" "$LAB_DIR/pcapflows.py" "$OUT" > /dev/null
capinfos -T -m -c -s -d -u -x -y "$OUT"/*.pcap > "$OUT/capinfos.txt" 2>/dev/null || warn "capinfos"
write_readme
if [[ -n ${KEEP_LOGS:-} ]]; then    # development: keep the servers' and tools' logs
    mkdir -p "$OUT/logs"; cp "$WORK"/srv/*.log "$WORK"/attack-*.log "$OUT/logs/" 2>/dev/null || true
fi
du -sb "$OUT" | awk '{printf "total size: %.1f MiB\n", $1/1048576}'
column -s, -t "$OUT/summary.csv" 2>/dev/null || cat "$OUT/summary.csv"
log "done in $(( $(date +%s) - RUN_T0 )) s"
