// The campaign's lanes: which generator family is sent to which listener over which channel,
// how often (weight), how big a batch is, and what the oracle expects there (the identities the
// app may be told, and whether the listener is on the inbound side, where reaching the
// bystander is an open proxy). The schedule picks a lane per batch from the seed: weighted
// random, with a flood lane every FLOOD_EVERY-th batch and a stall lane every STALL_EVERY-th.
import { MESH_SERVICE, type GenContext, type Ports } from './context.ts';
import { FLOOD_KINDS, floodPlan } from './gen-flood.ts';
import { guardPlan } from './guard.ts';
import { h2Plan } from './gen-h2.ts';
import { http1Plan } from './gen-http1.ts';
import { opaquePlan, stallPlan } from './gen-opaque.ts';
import { tlsPlan } from './gen-tls.ts';
import type { Batch, Channel, ConnPlan, Family, ListenerName } from './plan.ts';
import { planInputs } from './plan.ts';
import { Rng } from './rng.ts';

export interface Identities {
  readonly server: string;
  readonly client: string;
  readonly fuzzer: string;
}

/** Who the verified client of a lane's connections is (what the app may be told). */
type Principal = 'none' | 'client' | 'server' | 'fuzzer';

export interface Lane {
  readonly name: string;
  readonly listener: ListenerName;
  readonly channel: Channel;
  readonly family: Family;
  readonly weight: number;
  readonly principal: Principal;
  /** An inbound-side listener: it may forward only to its app. */
  readonly inboundSide: boolean;
}

function lane(
  listener: ListenerName,
  channel: Channel,
  family: Family,
  weight: number,
  principal: Principal,
  inboundSide: boolean,
): Lane {
  return {
    name: `${listener}/${channel}/${family}`,
    listener,
    channel,
    family,
    weight,
    principal,
    inboundSide,
  };
}

const SI = 'server-inbound';
// Weights: HTTP/2 lanes get the most batches (they are the fastest per input and carry HTTP/1
// semantics too, through the own HTTP/2), HTTP/1 lanes a third of them, the rest the remainder.
export const LANES: readonly Lane[] = [
  lane(SI, 'plain', 'http1', 4, 'none', true),
  lane(SI, 'plain', 'h2', 4, 'none', true),
  lane(SI, 'plain', 'tls', 1.5, 'none', true),
  lane(SI, 'plain', 'opaque', 1, 'none', true),
  lane(SI, 'mtls-h2h1', 'h2', 7, 'fuzzer', true),
  lane(SI, 'mtls-h2', 'h2', 3, 'fuzzer', true),
  lane(SI, 'mtls-http1', 'http1', 1.5, 'fuzzer', true),
  lane(SI, 'mtls-tcp', 'opaque', 1.5, 'fuzzer', true),
  lane('client-mesh', 'plain', 'http1', 2.5, 'client', true),
  lane('client-mesh', 'plain', 'h2', 3.5, 'client', true),
  lane('client-mesh', 'plain', 'tls', 1, 'client', true),
  lane('client-mesh', 'plain', 'opaque', 1, 'client', true),
  lane('client-outbound', 'plain', 'http1', 2, 'client', false),
  lane('client-outbound', 'plain', 'h2', 2, 'client', false),
  lane('client-inbound', 'plain', 'http1', 1, 'none', true),
  lane('client-inbound', 'plain', 'opaque', 0.5, 'none', true),
  lane('server-outbound', 'plain', 'http1', 0.5, 'server', false),
  lane('server-admin', 'plain', 'http1', 0.5, 'none', true),
  lane('client-admin', 'plain', 'http1', 0.5, 'none', true),
  // Scheduled apart (weight 0): floods and stalls.
  lane(SI, 'plain', 'flood', 0, 'none', true),
  lane(SI, 'mtls-h2h1', 'flood', 0, 'fuzzer', true),
  lane(SI, 'mtls-h2', 'flood', 0, 'fuzzer', true),
  lane('client-mesh', 'plain', 'flood', 0, 'client', true),
  lane(SI, 'plain', 'stall', 0, 'none', true),
  lane(SI, 'mtls-tcp', 'stall', 0, 'fuzzer', true),
  lane('client-mesh', 'plain', 'stall', 0, 'client', true),
  lane('client-outbound', 'plain', 'stall', 0, 'client', false),
];

// Periods that share no factor, and different phases: a stall never waits behind a flood long.
export const FLOOD_EVERY = 15;
export const STALL_EVERY = 23;

/** Inputs a batch aims at, plans at once, and the most plans, by family. */
const SIZES: Readonly<Record<Family, { inputs: number; concurrency: number; maxPlans: number }>> = {
  http1: { inputs: 2000, concurrency: 64, maxPlans: 1000 },
  h2: { inputs: 8000, concurrency: 32, maxPlans: 400 },
  tls: { inputs: 300, concurrency: 32, maxPlans: 300 },
  opaque: { inputs: 1000, concurrency: 32, maxPlans: 400 },
  stall: { inputs: 0, concurrency: 6, maxPlans: 6 },
  flood: { inputs: 0, concurrency: 4, maxPlans: 4 },
};

export function concurrencyOf(l: Lane): number {
  return l.channel === 'plain' ? SIZES[l.family].concurrency : Math.min(16, SIZES[l.family].concurrency);
}

/** The identities the app may be told for a lane's requests. */
export function allowedIds(l: Lane, ids: Identities): string[] {
  return l.principal === 'none' ? [] : [ids[l.principal]];
}

function authoritiesOf(listener: ListenerName, ports: Ports): string[] {
  const app = `127.0.0.1:${ports.app}`;
  const bystander = `127.0.0.1:${ports.bystander}`;
  switch (listener) {
    case 'client-outbound':
    case 'server-outbound':
      // Never the app directly: a request that reaches it must have come through the mesh (the
      // app cannot tell a direct call from an inbound proxy's, and no proxy vouches for it).
      return [MESH_SERVICE, bystander, `localhost:${ports.bystander}`];
    default:
      // Inbound side: the natural authority, and the bystander (which it must never reach).
      return [app, MESH_SERVICE, bystander, `localhost:${ports.bystander}`];
  }
}

/**
 * Which lane batch `index` runs: deterministic in the seed and the `damping` so far (a lane that
 * keeps breaking the mesh in a way already recorded runs less often: see run.ts).
 */
export function laneFor(
  seed: number,
  index: number,
  only: (l: Lane) => boolean,
  damping: ReadonlyMap<string, number> = new Map(),
): Lane {
  const rng = Rng.forBatch(seed, index, 'lane');
  const weighted = (lanes: readonly Lane[], base: (l: Lane) => number) =>
    rng.weighted(lanes.map((l) => [base(l) * (damping.get(l.name) ?? 1), l] as const));
  const special = (family: Family) => LANES.filter((l) => l.family === family && only(l));
  const floods = special('flood');
  const stalls = special('stall');
  if (index % FLOOD_EVERY === FLOOD_EVERY - 1 && floods.length > 0) return weighted(floods, () => 1);
  if (index % STALL_EVERY === 11 && stalls.length > 0) return weighted(stalls, () => 1);
  const normal = LANES.filter((l) => l.weight > 0 && only(l));
  if (normal.length === 0) return weighted([...floods, ...stalls], () => 1);
  return weighted(normal, (l) => l.weight);
}

export interface BatchSetup {
  readonly seed: number;
  readonly ports: Ports;
  readonly ids: Identities;
  /** The proxies' detection timeout: stall plans stay silent longer than this. */
  readonly detectTimeoutMs: number;
  /** ClientHellos of Node's own TLS client, mutated by the TLS lanes. */
  readonly capturedHellos: readonly Buffer[];
  /** 0..1: how big floods are. */
  readonly floodScale: number;
  /** Drop or cut plans that name an authority the lane does not allow (no namespace of our own). */
  readonly guard: boolean;
}

/** Generates batch `index` of lane `l`: the same plans for the same seed, index and ports. */
export function makeBatch(setup: BatchSetup, index: number, l: Lane): Batch {
  const rng = Rng.forBatch(setup.seed, index);
  const allowed = new Set(allowedIds(l, setup.ids));
  const ctx: GenContext = {
    rng,
    batch: index,
    listener: l.listener,
    ports: setup.ports,
    authorities: authoritiesOf(l.listener, setup.ports),
    proxyForm: l.listener === 'client-outbound' || l.listener === 'server-outbound',
    impersonate: Object.values(setup.ids).filter((id) => !allowed.has(id)),
    admin: l.listener.endsWith('-admin'),
  };
  const size = SIZES[l.family];
  const allowedAuthorities = new Set(ctx.authorities.map((a) => a.toLowerCase()));
  const plans: ConnPlan[] = [];
  let inputs = 0;
  for (
    let attempts = 0;
    plans.length < size.maxPlans && (size.inputs === 0 || inputs < size.inputs);
    attempts++
  ) {
    if (attempts > 4 * size.maxPlans) break;
    const generated = generate(ctx, setup, l, plans.length);
    const plan = setup.guard ? guardPlan(generated, l.family, allowedAuthorities) : generated;
    if (plan === null) continue;
    inputs += planInputs(plan).inputs;
    plans.push(plan);
  }
  return { index, lane: l.name, listener: l.listener, family: l.family, plans };
}

function generate(ctx: GenContext, setup: BatchSetup, l: Lane, i: number): ConnPlan {
  switch (l.family) {
    case 'http1':
      return http1Plan(ctx, i, l.channel);
    case 'h2':
      return h2Plan(ctx, i, l.channel);
    case 'tls':
      return tlsPlan(ctx, i, l.channel, setup.capturedHellos);
    case 'opaque':
      return opaquePlan(ctx, i, l.channel);
    case 'stall':
      return stallPlan(ctx, i, l.channel, setup.detectTimeoutMs + 700);
    case 'flood': {
      // One kind of flood per batch, so that what the batch did to the proxy names its cause.
      const kind = Rng.forBatch(setup.seed, ctx.batch, 'flood').pick(FLOOD_KINDS);
      return floodPlan(ctx, i, l.channel, kind, setup.floodScale);
    }
  }
}
