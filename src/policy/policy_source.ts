/**
 * Where the policy comes from, read at start-up and again on reload (SIGHUP): the policy file, the
 * descriptor set file and the backend's reflection service, over the defaults the flags give.
 *
 * @module
 */

import { loadDescriptorSetFile, type MethodCatalog, type MethodInfo } from "./descriptor.ts";
import { Policy, type PolicyDefaults, type PolicyRule } from "./policy.ts";
import { loadPolicyFile } from "./policy_file.ts";
import { fetchReflection, ReflectionError } from "./reflection.ts";
import { log } from "../util/log.ts";

/** The files and services a policy is read from; each is optional. */
export interface PolicySources {
  /** The policy file (`--policy`). */
  policyFile?: string;
  /** A FileDescriptorSet file (`--descriptor-set`). */
  descriptorSet?: string;
  /** A backend target to ask over gRPC reflection (`--reflection`). */
  reflection?: string;
  /** Bound on the reflection exchange, in ms. @default {5000} */
  reflectionTimeoutMs?: number;
}

/** What a reload did: the policy now in force, and each source that failed (and kept its last reading). */
export interface Reloaded {
  policy: Policy;
  errors: Error[];
}

/** Builds the policy from its sources, and rebuilds it on reload. */
export class PolicySource {
  readonly #defaults: PolicyDefaults;
  readonly #sources: PolicySources;
  #rules: readonly PolicyRule[] = [];
  #descriptors: MethodCatalog | undefined;
  #reflected: MethodCatalog | undefined;

  constructor(defaults: PolicyDefaults, sources: PolicySources = {}) {
    this.#defaults = defaults;
    this.#sources = sources;
  }

  /**
   * Reads every source (start-up).
   *
   * @throws the first source's error: PolicyFileError, DescriptorError or ReflectionError
   */
  async load(): Promise<Policy> {
    const { errors, policy } = await this.reload();
    if (errors.length > 0) throw errors[0];
    return policy;
  }

  /**
   * Reads every source again. A source that fails keeps what it gave before (an invalid policy file leaves
   * the old rules in force; a backend whose reflection fails leaves the old view), and its error is
   * returned; the others take effect.
   */
  async reload(): Promise<Reloaded> {
    const { policyFile, descriptorSet, reflection, reflectionTimeoutMs } = this.#sources;
    const errors: Error[] = [];
    const read = async <T>(source: string | undefined, reader: (source: string) => Promise<T>) => {
      if (source === undefined) return undefined;
      try {
        return await reader(source);
      } catch (err) {
        errors.push(err as Error);
        return undefined;
      }
    };
    const [rules, descriptors, reflected] = await Promise.all([
      read(policyFile, loadPolicyFile),
      read(descriptorSet, loadDescriptorSetFile),
      read(reflection, (target) => fetchReflection(target, { timeoutMs: reflectionTimeoutMs })),
    ]);
    this.#rules = rules ?? this.#rules;
    this.#descriptors = descriptors ?? this.#descriptors;
    this.#reflected = reflected ?? this.#reflected;
    return { policy: new Policy(this.#defaults, { rules: this.#rules, catalog: this.#catalog() }), errors };
  }

  /** Both catalogs in one; what the backend says over reflection wins over a descriptor file. */
  #catalog(): MethodCatalog | undefined {
    if (this.#descriptors === undefined) return this.#reflected;
    if (this.#reflected === undefined) return this.#descriptors;
    return new Map<string, MethodInfo>([...this.#descriptors, ...this.#reflected]);
  }
}

/**
 * A reloader for {@linkcode onSighup}: reads the policy's sources again and hands the result to `apply`
 * (the new policy, and the errors of sources that kept their last reading, each logged).
 */
export function policyReloader(source: PolicySource, apply: (result: Reloaded) => void): () => Promise<void> {
  return async () => {
    const result = await source.reload();
    for (const error of result.errors) {
      // A bad file is the operator's to fix; a backend whose reflection fails may be passing through.
      const level = error instanceof ReflectionError ? "warn" : "error";
      log[level]("policy reload: {error}; keeping what it said before", { error: error.message });
    }
    apply(result);
    log.info("policy reloaded ({outcome})", {
      outcome: result.errors.length === 0 ? "ok" : "partly failed",
      ...describePolicy(result.policy),
    });
  };
}

/** A short description of a policy, for logs: its rules and how many methods the service declares. */
export function describePolicy(policy: Policy): { rules: string[]; declaredMethods: number | undefined } {
  return { rules: policy.rules.map((rule) => rule.method), declaredMethods: policy.catalog?.size };
}
