/**
 * A TLS backend behind a DNS name with several addresses: each address is dialled by IP, but the SNI, the
 * certificate check and the `:authority` are the name's, on the collapsed path and on passthrough. The
 * backends are raw `node:http2` TLS servers so that they can report the SNI each connection sent.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import { frame, identity, newClient, parse, unary } from "./_helpers.ts";
import { generateTlsFixture } from "./_tls.ts";
import { startTestDns } from "./_dns_server.ts";
import { Proxy } from "../src/server/proxy.ts";
import { loadClientTls } from "../src/wire/tls.ts";

const fx = await generateTlsFixture();
globalThis.addEventListener("unload", () => Deno.removeSync(fx.dir, { recursive: true }));

const NAME = "backend.internal";

/** What one TLS backend saw of each call. */
interface Seen {
  sni: string | false | null | undefined;
  authority: string | undefined;
}

/**
 * A gRPC backend over TLS (certificate for `backend.internal` only) on `host:port`: Unary answers with
 * the SNI and `:authority` it saw; Bidi echoes.
 */
async function tlsReplica(host: string, port: number) {
  const seen: Seen[] = [];
  const server = http2.createSecureServer({
    key: fx.backendInternal.keyPem,
    cert: fx.backendInternal.certPem,
  });
  server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    const sni = (stream.session?.socket as TLSSocket | undefined)?.servername;
    const authority = headers[":authority"];
    seen.push({ sni, authority });
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    if (headers[":path"] === "/test.Test/Bidi") {
      stream.on("data", (chunk: Uint8Array) => stream.write(chunk));
      stream.on("end", () => stream.end());
    } else {
      stream.on("data", () => {});
      stream.on("end", () => stream.end(frame({ sni, authority, host })));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as { port: number }).port;
  return { port: bound, seen, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

for (const backendClient of ["h2", "grpc-js"] as const) {
  Deno.test(`Proxy with backendTls reaches every address of a name, sending the name as SNI and :authority (${backendClient} client)`, async () => {
    await using dns = await startTestDns();
    const first = await tlsReplica("127.0.0.2", 0);
    const second = await tlsReplica("127.0.0.3", first.port);
    dns.set(NAME, ["127.0.0.2", "127.0.0.3"]);
    const proxy = await Proxy.start({
      backend: `dns://127.0.0.1:${dns.port}/${NAME}:${first.port}`,
      host: "127.0.0.1",
      port: 0,
      backendClient,
      backendTls: await loadClientTls({ ca: fx.ca.cert }),
    });
    const client = newClient(proxy.port);
    try {
      const hosts = new Set<string>();
      for (let i = 0; i < 20; i++) {
        const r = await unary(client, "/test.Test/Unary", { i }, { deadline: Date.now() + 10_000 });
        assert.equal(r.status.code, grpc.status.OK, r.status.details);
        const answer = parse(r.response);
        assert.deepEqual([answer.sni, answer.authority], [NAME, `${NAME}:${first.port}`]);
        hosts.add(String(answer.host));
      }
      assert.deepEqual([...hosts].sort(), ["127.0.0.2", "127.0.0.3"], "both addresses answered");
      for (let i = 0; i < 10; i++) {
        const chat = client.makeBidiStreamRequest("/test.Test/Bidi", identity, identity);
        const reply = new Promise<Record<string, unknown>>((resolve) =>
          chat.once("data", (m) => resolve(parse(m)))
        );
        const status = new Promise<grpc.StatusObject>((resolve) => chat.on("status", resolve));
        chat.on("error", () => {});
        chat.write(Buffer.from(JSON.stringify({ i })));
        assert.deepEqual(await reply, { i });
        chat.end();
        assert.equal((await status).code, grpc.status.OK);
      }
      const all = [...first.seen, ...second.seen];
      assert.equal(all.length, 30);
      assert.deepEqual(
        new Set(all.map((s) => `${s.sni} ${s.authority}`)),
        new Set([`${NAME} ${NAME}:${first.port}`]),
      );
      assert.ok(
        first.seen.length > 0 && second.seen.length > 0,
        `${first.seen.length} / ${second.seen.length}`,
      );
    } finally {
      client.close();
      await proxy.close();
      await first.close();
      await second.close();
    }
  });
}
