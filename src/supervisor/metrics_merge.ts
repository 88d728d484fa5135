/**
 * One `/metrics` for several workers: each worker's Prometheus text, every sample labelled with its
 * `worker`, merged so that each metric family appears once (one HELP, one TYPE, then every worker's
 * samples), as the exposition format requires. Per worker rather than summed: a counter that restarts with
 * a replaced worker stays correct under `rate()` (Prometheus sees a counter reset on that series), a summed
 * counter would go backwards; and `sum without (worker) (...)` gives the total in a query.
 *
 * @module
 */

interface Family {
  help?: string;
  type?: string;
  samples: string[];
}

/** Adds `worker="<id>"` as the first label of one sample line. */
export function labelSample(line: string, worker: string): string {
  const label = `worker="${worker}"`;
  const brace = line.indexOf("{");
  const space = line.indexOf(" ");
  if (brace !== -1 && (space === -1 || brace < space)) {
    const rest = line.slice(brace + 1);
    return `${line.slice(0, brace)}{${label}${rest.startsWith("}") ? "" : ","}${rest}`;
  }
  if (space === -1) return line;
  return `${line.slice(0, space)}{${label}}${line.slice(space)}`;
}

/** Merges each worker's exposition text (`texts[i]` from worker `ids[i]`) into one. */
export function mergeMetrics(texts: readonly string[], ids: readonly string[], extra = ""): string {
  const families = new Map<string, Family>();
  const family = (name: string) => {
    let found = families.get(name);
    if (found === undefined) families.set(name, found = { samples: [] });
    return found;
  };
  texts.forEach((text, i) => {
    let current: Family | undefined;
    for (const line of text.split("\n")) {
      if (line === "") continue;
      const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (meta !== null) {
        current = family(meta[2]);
        if (meta[1] === "HELP") current.help ??= meta[3];
        else current.type ??= meta[3];
        continue;
      }
      if (line.startsWith("#")) continue;
      (current ?? family(line.split(/[{ ]/, 1)[0])).samples.push(labelSample(line, ids[i]));
    }
  });
  const out: string[] = [];
  for (const [name, { help, type, samples }] of families) {
    if (help !== undefined) out.push(`# HELP ${name} ${help}`);
    if (type !== undefined) out.push(`# TYPE ${name} ${type}`);
    out.push(...samples);
  }
  return out.join("\n") + "\n" + extra;
}
