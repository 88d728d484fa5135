/**
 * examples/kubernetes/collapser-sidecar.yaml as a spec: it parses, the sidecar's flags and environment are the
 * proxy's own (run through parseConfig, which refuses an unknown flag), and its ports, probes, scrape
 * annotations, policy file, user and grace period agree with what those flags configure.
 */

import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { parseConfig } from "../src/config/config.ts";
import { USAGE } from "../src/config/usage.ts";
import { parsePolicy } from "../src/policy/policy_file.ts";
import { VERSION } from "../src/util/version.ts";
import { NONROOT_UID } from "../container/build.ts";

const FILE = new URL("../examples/kubernetes/collapser-sidecar.yaml", import.meta.url);

// deno-lint-ignore no-explicit-any
type Manifest = any;

const documents = parseAllDocuments(await Deno.readTextFile(FILE));
for (const document of documents) assert.deepEqual(document.errors, [], `${FILE.pathname}: YAML errors`);
const manifests: Manifest[] = documents.map((document) => document.toJS());
const ofKind = (kind: string): Manifest => {
  const found = manifests.filter((m) => m.kind === kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0];
};
const deployment = ofKind("Deployment");
const service = ofKind("Service");
const configMap = ofKind("ConfigMap");
const pod = deployment.spec.template;
const sidecar = pod.spec.containers.find((c: Manifest) => c.name === "collapser");
const app = pod.spec.containers.find((c: Manifest) => c.name !== "collapser");
const env: Record<string, string> = Object.fromEntries(
  (sidecar.env ?? []).map((e: Manifest) => [e.name, String(e.value)]),
);
const portOf = (container: Manifest, name: string): number =>
  container.ports.find((p: Manifest) => p.name === name)?.containerPort;

const parsed = parseConfig(sidecar.args, env);
assert.equal(parsed.help, false);
const config = parsed.config;

Deno.test("the Kubernetes example's sidecar flags and variables are the proxy's own", () => {
  assert.ok(sidecar.args.every((a: unknown) => typeof a === "string"), "every argument is a string");
  for (const name of Object.keys(env)) {
    assert.match(USAGE, new RegExp(`\\[${name}\\]`), `${name} is a variable`);
  }
  assert.throws(
    () => parseConfig([...sidecar.args, "--no-such-flag"], env),
    /no-such-flag/,
    "a typo would fail",
  );
});

Deno.test("the Kubernetes example's ports, probes and scrape annotations match the flags", () => {
  assert.equal(portOf(sidecar, "grpc"), config.port);
  assert.equal(portOf(sidecar, "admin"), config.metricsPort);
  assert.equal(
    config.backend,
    `127.0.0.1:${portOf(app, app.ports[0].name)}`,
    "the backend is the app's port",
  );
  assert.equal(sidecar.livenessProbe.httpGet.path, "/health");
  assert.equal(sidecar.readinessProbe.httpGet.path, "/ready");
  for (const probe of [sidecar.startupProbe, sidecar.livenessProbe, sidecar.readinessProbe]) {
    assert.equal(probe.httpGet.port, "admin");
  }
  const annotations = pod.metadata.annotations;
  assert.equal(annotations["prometheus.io/scrape"], "true");
  assert.equal(Number(annotations["prometheus.io/port"]), config.metricsPort);
  assert.equal(annotations["prometheus.io/path"], "/metrics");
  assert.equal(service.spec.ports[0].targetPort, "grpc", "clients reach the proxy, not the app");
  assert.deepEqual(service.spec.selector, deployment.spec.selector.matchLabels);
});

Deno.test("the Kubernetes example runs the image as it is built: this release, uid 65532, read-only", () => {
  assert.ok(sidecar.image.endsWith(`:${VERSION}`), `${sidecar.image} is release ${VERSION}`);
  assert.equal(sidecar.securityContext.runAsUser, NONROOT_UID);
  assert.equal(sidecar.securityContext.readOnlyRootFilesystem, true);
  assert.equal(sidecar.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(sidecar.securityContext.capabilities.drop, ["ALL"]);
  assert.ok(
    pod.spec.terminationGracePeriodSeconds * 1000 > config.shutdownTimeoutMs,
    "the grace period outlasts the drain",
  );
  const { requests, limits } = sidecar.resources;
  assert.ok(requests.cpu && requests.memory && limits.memory, "requests and a memory limit are set");
});

Deno.test("the Kubernetes example's policy file is mounted where --policy points, and is valid", () => {
  const mount = sidecar.volumeMounts.find((m: Manifest) => config.policyFile?.startsWith(m.mountPath + "/"));
  assert.ok(mount, `a volume is mounted at ${config.policyFile}'s folder`);
  const volume = pod.spec.volumes.find((v: Manifest) => v.name === mount.name);
  assert.equal(volume.configMap.name, configMap.metadata.name);
  const file = config.policyFile!.slice(mount.mountPath.length + 1);
  const rules = parsePolicy(configMap.data[file], file);
  assert.ok(rules.length > 0);
});
