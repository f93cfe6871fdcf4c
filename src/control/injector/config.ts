// The injector's configuration file: the `config.yaml` of the ConfigMap `trellis-config` that
// `trellis install` writes (InjectorConfig, proxy-containers.ts), read by `trellis control
// --injector-config FILE` and checked once at start with the same messages as every other file
// (FILE:LINE:COLUMN: setting: what is wrong).
import * as v from 'valibot';
import { ConfigError } from '../../core/errors.ts';
import { LOG_LEVEL_SETTINGS } from '../../core/log.ts';
import { strictObjectMessage } from '../../core/schema.ts';
import { readFile } from 'node:fs/promises';
import { parseYamlSource, type YamlSource } from '../../core/yaml-position.ts';
import { DEFAULT_POLICIES } from '../../core/policy-syntax.ts';
import type { InjectorConfig } from './proxy-containers.ts';

const text = v.pipe(v.string('expected a string'), v.minLength(1, 'must not be empty'));

const schema = v.strictObject(
  {
    proxyImage: text,
    controlPlaneAddress: text,
    trustDomain: text,
    proxyLogLevel: v.picklist(LOG_LEVEL_SETTINGS, `expected one of ${LOG_LEVEL_SETTINGS.join(', ')}`),
    defaultInboundPolicy: v.picklist(DEFAULT_POLICIES, `expected one of ${DEFAULT_POLICIES.join(', ')}`),
    nativeSidecar: v.boolean('expected true or false'),
    cni: v.boolean('expected true or false'),
    controlPlaneNamespace: text,
    // Added after the first installs: a ConfigMap written without them means no tracing.
    traceCollector: v.optional(v.string('expected a string'), ''),
    traceSampleRatio: v.optional(
      v.pipe(v.string('expected a string'), v.check(isSampleRatio, 'expected a number from 0 to 1')),
      '0',
    ),
  },
  strictObjectMessage('unknown setting'),
);

/** A trace sample ratio as text: a decimal number from 0 to 1. */
export function isSampleRatio(text: string): boolean {
  if (!/^(0(\.\d+)?|1(\.0+)?|\.\d+)$/.test(text)) return false;
  const n = Number(text);
  return n >= 0 && n <= 1;
}

/** Reads and checks the file; ConfigError names `flag`, the file and the first wrong setting. */
export async function readInjectorConfig(flag: string, path: string): Promise<InjectorConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(flag, `${path}: ${(error as Error).message}`);
  }
  return parseInjectorConfig(flag, path, text);
}

/** Checks `text` (the YAML of `source`: a file, or the cluster's ConfigMap); errors as readInjectorConfig. */
export function parseInjectorConfig(flag: string, source: string, text: string): InjectorConfig {
  let yaml: YamlSource;
  try {
    yaml = parseYamlSource(text, source);
  } catch (error) {
    throw new ConfigError(flag, (error as Error).message);
  }
  const result = v.safeParse(schema, yaml.value);
  if (!result.success) {
    const issue = result.issues[0];
    const path = issue.path?.map((p) => p.key as string | number) ?? [];
    const key = path.join('.');
    const message = issue.kind === 'schema' && issue.input === undefined ? 'missing' : issue.message;
    const at = yaml.at(path, message === 'unknown setting');
    throw new ConfigError(flag, `${at}: ${key ? `${key}: ` : ''}${message}`);
  }
  return result.output;
}
