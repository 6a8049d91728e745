"""Start and stop the servers that the benchmarks load: the relay, nginx and Debian's `webhook`.

Every server listens on 127.0.0.1 on a port of 18180-18183, and every process started here is stopped by the
caller through `stop`.
"""
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

from signed_events import tenant_ids, tenant_secret

INBOUND_SECRET = "whsec_YmVuY2gtaW5ib3VuZC1zZWNyZXQtMDAwMDAwMDA="
OUTBOUND_SECRET = "whsec_YmVuY2gtb3V0Ym91bmQtc2VjcmV0LTAwMDAwMDA="
NGINX_PORT = 18180
SINK_PORT = 18181
RELAY_PORT = 18182
WEBHOOK_PORT = 18183
# Events are signed once per run and reused by later parts, so their timestamps must stay valid for the
# whole run, which the relay's default tolerance of 300 s would not allow.
SIGNATURE_TOLERANCE_SECONDS = 3600


def relay_config(data, tenants=1, destinations=(), api_keys=()):
    """Return a relay configuration with `tenants` tenants named as in signed_events.tenant_ids.

    Each tenant has the destinations named in `destinations`, all pointing at the nginx sink under
    `/TENANT/DESTINATION`. The read API keys go to the first tenant.
    """
    config = {
        "listen": f"127.0.0.1:{RELAY_PORT}", "dataDir": data, "logLevel": "warning", "eventLoops": 2,
        # The benchmark reads no admin endpoint, so the admin listener takes any free port.
        "admin": {"listen": "127.0.0.1:0"},
        # Deliveries still pending at the end of a run are not waited for.
        "shutdownGraceSeconds": 1,
        "tenants": [],
    }
    for index, tenant in enumerate(tenant_ids(tenants)):
        config["tenants"].append({
            "id": tenant, "projects": ["acme-mobile"],
            "verify": {"secrets": [tenant_secret(tenant, INBOUND_SECRET)],
                       "toleranceSeconds": SIGNATURE_TOLERANCE_SECONDS},
            "apiKeys": list(api_keys) if index == 0 else [],
            "destinations": [{"id": destination, "url": sink_url(tenant, destination), "secret": OUTBOUND_SECRET}
                             for destination in destinations],
        })
    return config


def sink_url(tenant, destination):
    # The single-tenant delivery benchmarks keep their old sink paths, /DESTINATION.
    if tenant == "bench":
        return f"http://127.0.0.1:{SINK_PORT}/{destination}"
    return f"http://127.0.0.1:{SINK_PORT}/{tenant}/{destination}"


def start_relay(binary, work, name, data=None, wait=True, **config_options):
    """Start `portout-relay serve` on a fresh data directory (or `data`), and wait for /readyz if `wait` is true.

    `config_options` go to relay_config. The relay's standard error goes to WORK/relay-NAME.log.
    """
    data = data or os.path.join(work, f"relay-{name}")
    path = os.path.join(work, f"relay-{name}.json")
    with open(path, "w") as handle:
        json.dump(relay_config(data, **config_options), handle)
    with open(os.path.join(work, f"relay-{name}.log"), "ab") as log:
        process = subprocess.Popen([binary, "serve", "--config", path], stderr=log)
    if wait:
        wait_ready(RELAY_PORT, process, timeout=60)
    return process


def start_nginx(work, port, location_body, access_log=None):
    """Start nginx with two workers, with `location_body` as the only location's directives.

    With `access_log`, each request writes its status as one line there, which is how the delivery
    benchmarks count deliveries.
    """
    prefix = os.path.join(work, f"nginx-{port}")
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    log_line = f"access_log {access_log} bare;" if access_log else "access_log off;"
    user = "user root;" if os.geteuid() == 0 else ""
    conf = f"""
{user}
worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 8192; }}
worker_rlimit_nofile 20000;
http {{
    log_format bare '$status';
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        {log_line}
        location / {{ default_type application/json; {location_body} }}
    }}
}}
"""
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as handle:
        handle.write(conf)
    process = subprocess.Popen(["nginx", "-p", prefix, "-c", path], stderr=subprocess.DEVNULL)
    wait_ready(port, process, path="/")
    return process


def start_webhook(work, secret_key):
    """Start Debian's `webhook` with one hook, /hooks/bench, that checks X-Hub-Signature-256 and runs /bin/true.

    The rule `payload-hmac-sha256` compares the header, without a `sha256=` prefix, against the lower-case
    hex HMAC-SHA256 of the raw body under `secret_key` (bytes). A comma-separated list of such values is tried
    one by one. webhook 2.8 covers nothing but the body with the MAC, so it cannot bind the event id or check
    a timestamp, and it returns 500 for a mismatch. Without include-command-output-in-response, webhook sends
    the response first and then runs the command, so /bin/true costs CPU but adds no latency.
    """
    hooks = [{
        "id": "bench",
        "execute-command": "/bin/true",
        "response-message": "accepted",
        "success-http-response-code": 202,
        "http-methods": ["POST"],
        "trigger-rule-mismatch-http-response-code": 401,
        "trigger-rule": {"match": {
            "type": "payload-hmac-sha256", "secret": secret_key.decode("ascii"),
            "parameter": {"source": "header", "name": "X-Hub-Signature-256"},
        }},
    }]
    path = os.path.join(work, "hooks.json")
    with open(path, "w") as handle:
        json.dump(hooks, handle)
    log = open(os.path.join(work, "webhook.log"), "ab")
    process = subprocess.Popen(["webhook", "-hooks", path, "-ip", "127.0.0.1", "-port", str(WEBHOOK_PORT)],
                               stdout=log, stderr=log)
    log.close()
    wait_ready(WEBHOOK_PORT, process, path="/hooks/bench")
    return process


def wait_ready(port, process, path="/readyz", timeout=30):
    """Wait until `path` on `port` returns any HTTP response, or raise when the process exits or time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process on port {port} exited with status {process.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing responded on port {port} within {timeout} s")


def stop(process):
    """Stop a process with SIGTERM, then SIGKILL after 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")
