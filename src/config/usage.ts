/**
 * The `--help` text: every flag, its environment variable and its default, as the user reads them.
 *
 * @module
 */

import { DEFAULT_MAX_QUEUE } from "../backend/limiter.ts";
import { DEFAULT_REDIS_MAX_BYTES, DEFAULT_REDIS_PREFIX } from "../fleet/redis_config.ts";

/** Default port of the gRPC listener. */
export const DEFAULT_GRPC_PORT = 50052;
/** Default port of the metrics and health listener. */
export const DEFAULT_METRICS_PORT = 2112;

/** The `--help` text. */
export const USAGE = `Usage: collapser --backend TARGET [options]

A gRPC proxy that collapses identical in-flight unary calls into one backend call.

Options (each overrides the environment variable in brackets):
  --backend TARGET           backend to forward every call to            [BACKEND_ADDRESS] (required)
                             HOST:PORT (a name: every A/AAAA address), A:PORT,B:PORT, dns:///NAME:PORT,
                             dns://RESOLVER:PORT/NAME:PORT, ipv4:/ipv6: lists, unix:/path
  --port N                   gRPC listen port                            [GRPC_PORT] (default ${DEFAULT_GRPC_PORT})
  --host ADDR                gRPC listen address                         [GRPC_HOST] (default 0.0.0.0)
  --metrics-port N           metrics and health port                     [METRICS_PORT] (default ${DEFAULT_METRICS_PORT})
  --cache-ttl DURATION       how long answers are reused, unless the     [COLLAPSER_CACHE_DURATION] (default 100ms)
                             backend's cache-control says; 0 = only what it says
  --backend-timeout DURATION bound on one backend call                   [BACKEND_TIMEOUT] (default 10s)
  --key-headers LIST         metadata always in the key, even if ignored [COLLAPSER_KEY_HEADERS]
                             (authorization always is); comma-separated
  --ignore-headers LIST      metadata left out of the key on purpose     [COLLAPSER_IGNORE_HEADERS]
                             (every other entry is in it); names or globs: x-request-id,x-debug-*
  --collapse PATTERNS        only these methods collapse: globs like     [COLLAPSER_COLLAPSE] (default *)
                             /shop.Catalog/*, /shop.*/Get*, and "declared" (methods the service
                             declares NO_SIDE_EFFECTS or IDEMPOTENT)
  --no-collapse PATTERNS     these methods never collapse (wins)         [COLLAPSER_NO_COLLAPSE]
  --policy FILE              per-method rules, YAML or JSON; SIGHUP      [COLLAPSER_POLICY]
                             reloads it
  --descriptor-set FILE      a FileDescriptorSet (protoc -o, buf build)  [COLLAPSER_DESCRIPTOR_SET]
  --reflection               ask the backend's gRPC reflection service   [COLLAPSER_REFLECTION]
                             (at start-up and on SIGHUP)
  --shadow                   collapse nothing; count what would have     [COLLAPSER_SHADOW]
                             been saved (metrics)
  --stale-if-error DURATION  answer with an expired OK answer this old   [COLLAPSER_STALE_IF_ERROR] (default 0: off)
                             when the backend call fails (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED)
  --[no-]refresh-ahead       refresh hot answers before they expire      [COLLAPSER_REFRESH_AHEAD] (default on)
  --hot-keys N               keys the status page tracks as hot          [COLLAPSER_HOT_KEYS] (default 1000)
  --no-hot-keys              track no hot keys (same as --hot-keys 0)
  --max-backend-concurrency N  most backend calls at once (collapsed and  [COLLAPSER_MAX_BACKEND_CONCURRENCY] (default 0: no bound)
                             passed through); later calls queue
  --max-queue N              most calls waiting for a backend slot;      [COLLAPSER_MAX_QUEUE] (default ${DEFAULT_MAX_QUEUE})
                             past it: RESOURCE_EXHAUSTED at once
  --queue-timeout DURATION   longest wait for a backend slot             [COLLAPSER_QUEUE_TIMEOUT] (default 1s)

Caching like an HTTP cache (RFC 9111, 9211):
  --max-ttl DURATION         longest the backend's cache-control can     [COLLAPSER_MAX_TTL] (default 1m)
                             make an answer fresh (max-age, s-maxage,
                             stale-while-revalidate, stale-if-error)
  --no-cache-control         ignore the backend's cache-control; keep    [COLLAPSER_CACHE_CONTROL=false]
                             answers for --cache-ttl only
  --allow-client-no-cache    a caller's cache-control: no-cache (or      [COLLAPSER_ALLOW_CLIENT_NO_CACHE] (default off)
                             max-age=0) gets a fresh backend call
  --no-cache-status          no cache-status trailer on answers          [COLLAPSER_CACHE_STATUS=false]

Admin port:
  --admin-host ADDR          address the admin port binds                [COLLAPSER_ADMIN_HOST] (default: --host)
  --admin-token TOKEN        token that POST /purge requires (16+        [COLLAPSER_ADMIN_TOKEN] (default: purge off)
                             characters); prefer the variable or a file
  --admin-token-file FILE    ... read from this file                     [COLLAPSER_ADMIN_TOKEN_FILE]

TLS (SIGHUP reloads the files):
  --tls-cert FILE            serve gRPC over TLS with this PEM chain     [COLLAPSER_TLS_CERT]
  --tls-key FILE             ... and this PEM private key                [COLLAPSER_TLS_KEY]
  --tls-client-ca FILE       require client certificates from this CA    [COLLAPSER_TLS_CLIENT_CA]
                             (mTLS); the client's identity joins the key
  --backend-tls              call the backend over TLS                   [COLLAPSER_BACKEND_TLS]
  --backend-ca FILE          CA bundle for the backend's certificate     [COLLAPSER_BACKEND_CA] (default: system roots)
  --backend-cert FILE        client certificate for the backend (mTLS)   [COLLAPSER_BACKEND_CERT]
  --backend-key FILE         ... and its private key                     [COLLAPSER_BACKEND_KEY]
  --backend-server-name NAME name to verify (and send as SNI)            [COLLAPSER_BACKEND_SERVER_NAME]
                             (any --backend-* TLS option implies --backend-tls)

A fleet that collapses as one (shared tier):
  --redis URL                redis://[user:password@]host:port[/db],     [REDIS_URL] (default: off)
                             rediss:// for TLS
  --redis-cluster NODES      a Redis Cluster instead: seed nodes         [REDIS_CLUSTER_NODES]
                             HOST:PORT[,HOST:PORT...]
  --redis-sentinel NODES     Sentinel instead: sentinels                 [REDIS_SENTINEL_NODES]
                             HOST:PORT[,...] (port default 26379)
  --redis-sentinel-master NAME  the master they watch (followed          [REDIS_SENTINEL_MASTER]
                             through failovers)
  --redis-sentinel-password PASSWORD  the sentinels' own password        [REDIS_SENTINEL_PASSWORD]
  --redis-username NAME      ACL user (Cluster, Sentinel's master)       [REDIS_USERNAME]
  --redis-password PASSWORD  password (Cluster, Sentinel's master)       [REDIS_PASSWORD]
  --redis-tls                TLS to a Cluster or Sentinel                [COLLAPSER_REDIS_TLS]
  --redis-ca FILE            CA bundle for Redis's certificate           [COLLAPSER_REDIS_CA] (default: system roots)
  --redis-cert FILE          client certificate for Redis                [COLLAPSER_REDIS_CERT]
  --redis-key FILE           ... and its private key                     [COLLAPSER_REDIS_KEY]
                             (any of the three means TLS; with --redis,
                             give a rediss:// URL)
  --redis-prefix STRING      namespace of the tier's keys and channel    [COLLAPSER_REDIS_PREFIX] (default ${DEFAULT_REDIS_PREFIX})
  --redis-max-bytes BYTES    larger answers stay on their proxy          [COLLAPSER_REDIS_MAX_BYTES] (default ${DEFAULT_REDIS_MAX_BYTES})
  --redis-timeout DURATION   bound on one Redis round trip; past it the  [COLLAPSER_REDIS_TIMEOUT] (default 250ms)
                             proxy collapses alone until Redis is back
  --redis-lock-ttl DURATION  life of a key's lock: the longest a proxy   [COLLAPSER_REDIS_LOCK_TTL] (default 5s)
                             waits for another proxy's answer
  --reuse-port               share the gRPC port with other processes    [COLLAPSER_REUSE_PORT]
                             (SO_REUSEPORT)

Several cores (one supervisor, N worker processes on one port):
  --workers N|auto           worker processes; auto = the cores the      [COLLAPSER_WORKERS] (default 0: one process)
                             cgroup allows; a dead one is started again
  --recycle-connections N    replace a worker after N client connections [COLLAPSER_RECYCLE_CONNECTIONS] (default 0: never)
  --recycle-rss SIZE         replace a worker past this resident set,    [COLLAPSER_RECYCLE_RSS] (default 0: never)
                             e.g. 200MiB (needs --workers; 1 is fine)
Memory:
  --memory-limit SIZE|auto|off  the memory it may use; sizes the cache   [COLLAPSER_MEMORY_LIMIT] (default auto: the cgroup's limit)
                             and, with --workers, --recycle-rss
  --cache-max-bytes SIZE     most bytes of answers cached per process    [COLLAPSER_CACHE_MAX_BYTES] (default 64MiB, less under a limit)
  --cache-max-entries N      most answers cached per process             [COLLAPSER_CACHE_MAX_ENTRIES] (default 10000)
A backend of several addresses (a name, or a list):
  --lb-policy POLICY         least_request (the less busy of two random   [COLLAPSER_LB_POLICY] (default least_request)
                             addresses) or round_robin
  --resolve-interval DURATION  how often names are resolved again        [COLLAPSER_RESOLVE_INTERVAL] (default 30s)
                             (also when a connection is lost)
  --outlier-failures N       UNAVAILABLE answers in a row that eject an  [COLLAPSER_OUTLIER_FAILURES] (default 5)
                             address (a refused connection ejects at once); 0 = only refusals
  --outlier-ejection-time DURATION  first ejection; each next one lasts  [COLLAPSER_OUTLIER_EJECTION_TIME] (default 30s)
                             longer (up to 5m)
  --outlier-max-ejected PERCENT  most addresses ejected at once          [COLLAPSER_OUTLIER_MAX_EJECTED] (default 50%)
  --retry-budget PERCENT     retries at most this share of calls         [COLLAPSER_RETRY_BUDGET] (default 20%)
                             (transparent ones, and idempotent methods'); 0 = no retries

  --max-message-size BYTES   largest request message accepted            [COLLAPSER_MAX_MESSAGE_SIZE] (default 4194304)
  --log-level LEVEL          debug, info, warn or error                  [LOG_LEVEL] (default info)
  --shutdown-timeout DURATION  bound on draining calls at shutdown       [SHUTDOWN_TIMEOUT] (default 30s)
  -h, --help                 print this help and exit
  --probe health|ready       instead of starting: ask the proxy running  [METRICS_PORT, GRPC_HOST]
                             here (its admin port, --metrics-port) and
                             exit 0 if it answers 200, else 1; a health
                             check for images without a shell

Durations are Go-style: 100ms, 10s, 1m30s.
`;
