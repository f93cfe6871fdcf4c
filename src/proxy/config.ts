// The proxy's configuration: one zod schema gives both the validation (with the field that is
// wrong named in every error) and the TypeScript type. Sources, later overriding earlier: schema
// defaults, the YAML file (--config), then command-line flags. process.env is not read here.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../core/errors.ts';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected HOST:PORT, e.g. 127.0.0.1:4140')
  .refine((s) => Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535, 'port must be 0..65535');
const port = z.number().int().min(1).max(65535);
const ms = z.number().int().min(0);

const destinationSchema = z.strictObject({
  /** A listener bound for one destination (explicit mode). */
  listen: hostPort,
  /** Where its connections go: HOST:PORT. */
  target: hostPort,
  /** auto detects the protocol; the others skip detection. */
  protocol: z.enum(['auto', 'http1', 'h2', 'opaque']).default('auto'),
});

export const proxyConfigSchema = z.strictObject({
  inboundListen: hostPort.default('0.0.0.0:4143'),
  outboundListen: hostPort.default('127.0.0.1:4140'),
  adminListen: hostPort.default('0.0.0.0:4191'),
  /** Inbound traffic is forwarded to the application at appHost:appPort. */
  appPort: port.optional(),
  appHost: z.string().min(1).default('127.0.0.1'),
  /**
   * explicit: destinations come from the listener (inbound: the app port; outbound: the HTTP
   * proxy request). transparent: listeners behind iptables REDIRECT read SO_ORIGINAL_DST.
   */
  mode: z.enum(['explicit', 'transparent']).default('explicit'),
  /** Extra listeners, each bound for one destination. */
  destinations: z.array(destinationSchema).default([]),
  /** Ports whose protocols are server-first or otherwise undetectable: forwarded as opaque TCP. */
  opaquePorts: z.array(port).default([25, 587, 3306, 4444, 5432, 6379, 9300, 11211]),
  detect: z
    .strictObject({
      /** How long to wait for the client's first bytes before treating the connection as opaque. */
      timeoutMs: ms.default(3000),
      /** How long a destination whose detection timed out is remembered as opaque. */
      opaqueCacheMs: ms.default(60_000),
      opaqueCacheMax: z.number().int().min(0).default(10_000),
    })
    .prefault({}),
  http1: z
    .strictObject({
      maxRequestLineBytes: z.number().int().min(64).default(8192),
      maxHeaderBytes: z.number().int().min(256).default(64 * 1024),
      maxHeaders: z.number().int().min(1).default(128),
    })
    .prefault({}),
  timeouts: z
    .strictObject({
      connectMs: ms.default(5000),
      /** A connection with nothing in flight and no bytes for this long is closed (0: never). */
      idleMs: ms.default(300_000),
      /** Time allowed for the upstream's response head (0: no limit). */
      responseMs: ms.default(0),
      /** On SIGTERM: how long in-flight work may take before the proxy exits anyway. */
      drainGraceMs: ms.default(30_000),
    })
    .prefault({}),
  pool: z
    .strictObject({
      maxIdlePerHost: z.number().int().min(0).default(128),
      idleTimeoutMs: ms.default(60_000),
    })
    .prefault({}),
  log: z
    .strictObject({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'off']).default('info'),
      /** Access log, one JSON line per request: off, stdout, stderr or a file path. */
      access: z.string().default('off'),
    })
    .prefault({}),
});

export type ProxyConfig = z.infer<typeof proxyConfigSchema>;
export type DestinationConfig = z.infer<typeof destinationSchema>;

/** Validates a plain object; throws ConfigError naming the first wrong field. */
export function validateProxyConfig(input: unknown): ProxyConfig {
  const result = proxyConfigSchema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = issue.path.map(String).join('.');
  throw new ConfigError(field, issue.message);
}

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('', `cannot read config file ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError('', `config file ${path} is not valid YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError('', `config file ${path} must hold a mapping of settings`);
  }
  return doc as Record<string, unknown>;
}

/** Splits "HOST:PORT" (IPv6 in brackets) into its parts. */
export function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  let host = s.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(s.slice(i + 1)) };
}
