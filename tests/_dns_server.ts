/**
 * A tiny DNS server on loopback UDP (node:dgram) that answers A and AAAA questions from a table the test
 * changes as it goes: what a service's DNS name looks like while its replicas come and go. Enough of RFC
 * 1035 for one question per query; anything else is answered with no records.
 */

import dgram from "node:dgram";
import { Buffer } from "node:buffer";
import { isIP } from "node:net";

/** A running test DNS server; dispose closes it. */
export interface TestDns extends AsyncDisposable {
  /** Its UDP port on 127.0.0.1. */
  readonly port: number;
  /** Sets the addresses `name` resolves to (IPv4 answer A questions, IPv6 ones AAAA). */
  set(name: string, addresses: string[]): void;
  /** Questions answered so far, per name. */
  readonly queries: Map<string, number>;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;

/** Reads the question's name and type; undefined for a packet that is not one plain query. */
function question(packet: Buffer): { name: string; type: number; end: number } | undefined {
  if (packet.length < 12 || packet.readUInt16BE(4) !== 1) return undefined;
  const labels: string[] = [];
  let at = 12;
  while (at < packet.length && packet[at] !== 0) {
    const length = packet[at];
    if (length > 63) return undefined; // no compression in questions
    labels.push(packet.subarray(at + 1, at + 1 + length).toString("latin1"));
    at += length + 1;
  }
  if (at + 5 > packet.length) return undefined;
  return { name: labels.join(".").toLowerCase(), type: packet.readUInt16BE(at + 1), end: at + 5 };
}

/** The 16 bytes of an IPv6 address. */
function ipv6Bytes(address: string): Buffer {
  const [head, tail = ""] = address.split("::");
  const parts = (s: string) => s === "" ? [] : s.split(":").map((h) => parseInt(h, 16));
  const a = parts(head), b = address.includes("::") ? parts(tail) : [];
  const words = [...a, ...Array(8 - a.length - b.length).fill(0), ...b];
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

/** Starts the server on 127.0.0.1 (a free port). */
export async function startTestDns(): Promise<TestDns> {
  const table = new Map<string, string[]>();
  const queries = new Map<string, number>();
  const socket = dgram.createSocket("udp4");
  socket.on("message", (packet: Buffer, from: dgram.RemoteInfo) => {
    const q = question(packet);
    if (q === undefined) return;
    queries.set(q.name, (queries.get(q.name) ?? 0) + 1);
    const family = q.type === TYPE_A ? 4 : q.type === TYPE_AAAA ? 6 : 0;
    const found = (table.get(q.name) ?? []).filter((ip) => isIP(ip) === family);
    const header = Buffer.alloc(12);
    header.writeUInt16BE(packet.readUInt16BE(0), 0); // id
    header.writeUInt16BE(0x8180, 2); // a response, recursion desired and available, NOERROR
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(found.length, 6);
    const answers = found.map((ip) => {
      const data = family === 4 ? Buffer.from(ip.split(".").map(Number)) : ipv6Bytes(ip);
      const record = Buffer.alloc(12);
      record.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
      record.writeUInt16BE(q.type, 2);
      record.writeUInt16BE(1, 4); // IN
      record.writeUInt32BE(1, 6); // TTL 1 s
      record.writeUInt16BE(data.length, 10);
      return Buffer.concat([record, data]);
    });
    socket.send(Buffer.concat([header, packet.subarray(12, q.end), ...answers]), from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return {
    port: socket.address().port,
    set: (name, addresses) => void table.set(name.toLowerCase(), addresses),
    queries,
    [Symbol.asyncDispose]: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
