// valibot schemas of route filters (HTTPRouteFilter, GRPCRouteFilter), each a `type` and the one
// field of that type, with the CRD's rules: RequestHeaderModifier, ResponseHeaderModifier,
// RequestRedirect, URLRewrite, RequestMirror, ExtensionRef. A rule's ExtensionRef to an HTTPFault
// (fault.ts) injects that fault; any other, or one naming no HTTPFault, makes the rule answer 500
// (as the spec requires for an unresolvable filter), with the route marked PartiallyInvalid. CORS
// and ExternalAuth are refused as unsupported.
import * as v from 'valibot';
import {
  backendObjectRefSchema,
  group,
  headerName,
  headerValue,
  kind,
  listOf,
  objectIssue,
  objectName,
  portNumber,
  preciseHostname,
  uniqueHeaderNames,
} from './schema-common.ts';

/**
 * Fields a header modifier may not touch: they frame the message or belong to one connection, and
 * the proxy writes them itself from what it forwards. Setting or removing Content-Length made the
 * upstream read a body as the next request (request smuggling past the route) or a client read a
 * response wrongly; Host changes through URLRewrite's hostname.
 */
const PROXY_OWNED_FIELDS = new Set([
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'upgrade',
  'http2-settings',
  'host',
]);

const modifiableName = v.pipe(
  headerName,
  v.check(
    (name) => !PROXY_OWNED_FIELDS.has(name.toLowerCase()),
    'the proxy writes this field itself (framing, connection, Host): a header filter may not change it',
  ),
);

const header = v.strictObject({ name: modifiableName, value: headerValue }, objectIssue);

export const headerModifierSchema = v.strictObject(
  {
    set: v.optional(
      v.pipe(
        listOf(header, 16),
        v.check((x) => uniqueHeaderNames(x), 'a header is named twice'),
      ),
      [],
    ),
    add: v.optional(
      v.pipe(
        listOf(header, 16),
        v.check((x) => uniqueHeaderNames(x), 'a header is named twice'),
      ),
      [],
    ),
    remove: v.optional(
      v.pipe(
        listOf(modifiableName, 16),
        v.check(
          (names) => new Set(names.map((n) => n.toLowerCase())).size === names.length,
          'a header is named twice',
        ),
      ),
      [],
    ),
  },
  objectIssue,
);
export type HeaderModifier = v.InferOutput<typeof headerModifierSchema>;

const pathModifierSchema = v.pipe(
  v.strictObject(
    {
      type: v.picklist(
        ['ReplaceFullPath', 'ReplacePrefixMatch'],
        'expected ReplaceFullPath or ReplacePrefixMatch',
      ),
      replaceFullPath: v.optional(
        v.pipe(v.string('expected a string'), v.maxLength(1024, 'at most 1024 characters')),
      ),
      replacePrefixMatch: v.optional(
        v.pipe(v.string('expected a string'), v.maxLength(1024, 'at most 1024 characters')),
      ),
    },
    objectIssue,
  ),
  v.check(
    (p) =>
      p.type === 'ReplaceFullPath'
        ? p.replaceFullPath !== undefined && p.replacePrefixMatch === undefined
        : p.replacePrefixMatch !== undefined && p.replaceFullPath === undefined,
    'ReplaceFullPath needs replaceFullPath (only), ReplacePrefixMatch needs replacePrefixMatch (only)',
  ),
);
export type PathModifier = v.InferOutput<typeof pathModifierSchema>;

export const redirectSchema = v.strictObject(
  {
    scheme: v.optional(v.picklist(['http', 'https'], 'expected http or https')),
    hostname: v.optional(preciseHostname),
    path: v.optional(pathModifierSchema),
    port: v.optional(portNumber),
    statusCode: v.optional(v.picklist([301, 302, 303, 307, 308], 'expected 301, 302, 303, 307 or 308'), 302),
  },
  objectIssue,
);
export type Redirect = v.InferOutput<typeof redirectSchema>;

export const rewriteSchema = v.strictObject(
  { hostname: v.optional(preciseHostname), path: v.optional(pathModifierSchema) },
  objectIssue,
);
export type Rewrite = v.InferOutput<typeof rewriteSchema>;

const mirrorSchema = v.pipe(
  v.strictObject(
    {
      backendRef: backendObjectRefSchema,
      percent: v.optional(
        v.pipe(
          v.number('expected 0..100'),
          v.integer('expected 0..100'),
          v.minValue(0, 'expected 0..100'),
          v.maxValue(100, 'expected 0..100'),
        ),
      ),
      fraction: v.optional(
        v.pipe(
          v.strictObject(
            {
              numerator: v.pipe(
                v.number('expected a number'),
                v.integer('expected an integer'),
                v.minValue(0, 'expected >= 0'),
              ),
              denominator: v.optional(
                v.pipe(
                  v.number('expected a number'),
                  v.integer('expected an integer'),
                  v.minValue(1, 'expected >= 1'),
                ),
                100,
              ),
            },
            objectIssue,
          ),
          v.check((f) => f.numerator <= f.denominator, 'numerator must be at most denominator'),
        ),
      ),
    },
    objectIssue,
  ),
  v.check((m) => m.percent === undefined || m.fraction === undefined, 'give percent or fraction, not both'),
);
export type Mirror = v.InferOutput<typeof mirrorSchema>;

const extensionRefSchema = v.strictObject({ group, kind, name: objectName }, objectIssue);

const FILTER_FIELDS = {
  RequestHeaderModifier: 'requestHeaderModifier',
  ResponseHeaderModifier: 'responseHeaderModifier',
  RequestRedirect: 'requestRedirect',
  URLRewrite: 'urlRewrite',
  RequestMirror: 'requestMirror',
  ExtensionRef: 'extensionRef',
} as const;
type FilterType = keyof typeof FILTER_FIELDS;

const filterEntries = {
  requestHeaderModifier: v.optional(headerModifierSchema),
  responseHeaderModifier: v.optional(headerModifierSchema),
  requestMirror: v.optional(mirrorSchema),
  extensionRef: v.optional(extensionRefSchema),
};

/** The filter's `type` names exactly the one field it sets. */
const typeMatchesField = (filter: Record<string, unknown> & { type: FilterType }): boolean =>
  Object.entries(FILTER_FIELDS).every(
    ([type, field]) => (filter[field] !== undefined) === (type === filter.type),
  );

const filterTypeMessage = 'the field named by type must be set, and no other filter field';

function filterSchema<const T extends readonly FilterType[], E extends v.ObjectEntries>(
  types: T,
  entries: E,
  unsupported: readonly string[],
) {
  return v.pipe(
    v.strictObject(
      {
        type: v.pipe(
          v.string('expected a string'),
          v.check(
            (t) => !unsupported.includes(t),
            (issue) => `${String(issue.input)} filters are not supported by Trellis`,
          ),
          v.picklist(types, `expected one of ${types.join(', ')}`),
        ),
        ...entries,
      },
      objectIssue,
    ),
    v.check((f) => typeMatchesField(f as never), filterTypeMessage),
  );
}

const HTTP_FILTER_TYPES = [
  'RequestHeaderModifier',
  'ResponseHeaderModifier',
  'RequestRedirect',
  'URLRewrite',
  'RequestMirror',
  'ExtensionRef',
] as const;
const GRPC_FILTER_TYPES = [
  'RequestHeaderModifier',
  'ResponseHeaderModifier',
  'RequestMirror',
  'ExtensionRef',
] as const;

export interface Filter {
  readonly type: FilterType;
  readonly requestHeaderModifier?: HeaderModifier | undefined;
  readonly responseHeaderModifier?: HeaderModifier | undefined;
  readonly requestRedirect?: Redirect | undefined;
  readonly urlRewrite?: Rewrite | undefined;
  readonly requestMirror?: Mirror | undefined;
  readonly extensionRef?:
    { readonly group: string; readonly kind: string; readonly name: string } | undefined;
}

/** A filter list: at most 16, no RequestRedirect with URLRewrite, each type but RequestMirror and ExtensionRef at most once. */
const filterList = (item: v.GenericSchema<unknown, Filter>) =>
  v.pipe(
    listOf(item, 16),
    v.check(
      (filters) =>
        !(filters.some((f) => f.type === 'RequestRedirect') && filters.some((f) => f.type === 'URLRewrite')),
      'RequestRedirect and URLRewrite cannot be used together',
    ),
    v.check((filters) => {
      const once = filters
        .filter((f) => f.type !== 'RequestMirror' && f.type !== 'ExtensionRef')
        .map((f) => f.type);
      return new Set(once).size === once.length;
    }, 'a filter type other than RequestMirror and ExtensionRef is repeated'),
  );

export const httpFiltersSchema = filterList(
  filterSchema(
    HTTP_FILTER_TYPES,
    {
      ...filterEntries,
      requestRedirect: v.optional(redirectSchema),
      urlRewrite: v.optional(rewriteSchema),
      // Known to the spec but refused through `type`; accepted here so the type's message is the only one.
      cors: v.optional(v.unknown()),
      externalAuth: v.optional(v.unknown()),
    },
    ['CORS', 'ExternalAuth'],
  ) as v.GenericSchema<unknown, Filter>,
);
export const grpcFiltersSchema = filterList(
  filterSchema(GRPC_FILTER_TYPES, filterEntries, []) as v.GenericSchema<unknown, Filter>,
);
