// An in-process fake Kubernetes API server for discovery tests (linkerd2 tests a fake API built
// from inline YAML; ours also speaks the wire protocol, so the real @kubernetes/client-node
// informers drive it). It serves list and watch for Services, Pods and EndpointSlices
// (cluster-wide and per namespace, with label and field selectors): a list answers
// {kind: XList, metadata: {resourceVersion}, items}; `?watch=true&resourceVersion=N` streams JSON
// lines {"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object"} with increasing resource
// versions, periodic BOOKMARKs when asked for, and, for a version older than the retained history,
// an ERROR event carrying a 410 Status before it ends the stream (what a real API server does).
// The test API creates, updates and deletes objects, drops every watch, and compacts the history.
// It also answers API discovery (discovery.ts), so that the real kubectl can map kinds against it,
// and a GET of one object by name (the injector reads Namespaces; `trellis upgrade` and `trellis
// check` read what `trellis install` wrote), GET /version, and the creation of Pods by POST,
// which go through the stored MutatingWebhookConfigurations over HTTPS first (admission.ts). It stores every kind discovery
// names; a Secret's stringData becomes base64 data, as the real API server does.
// Kinds with a status subresource (the Gateway API routes) behave as a CRD's with
// `subresources.status`: metadata.generation counts spec changes, writes to the main resource
// keep the stored status, and PATCH (application/merge-patch+json, RFC 7386) or PUT of
// PREFIX/namespaces/NS/PLURAL/NAME/status changes only the status, honouring a
// metadata.resourceVersion precondition (409 Conflict). Any stored kind can also be created by
// POST and merge-patched by PATCH (what `kubectl apply` sends for custom resources).
// DELETE of one object removes it at once (no finalizers), answering with it (`kubectl delete`).
// GET of a Pod's proxy subresource (/api/v1/namespaces/NS/pods/NAME[:PORT]/proxy/PATH) is relayed
// to the pod's status.podIP and that port over HTTP, as the real API server does (what `trellis
// check --proxy` reads the proxies' certificates through); 503 when nothing answers there.
// Leases (coordination.k8s.io/v1, what `trellis control` elects its status writer with) are
// served like every stored kind: GET, POST (409 AlreadyExists when it exists), PUT with the
// metadata.resourceVersion precondition (409 Conflict when stale); their spec.acquireTime and
// spec.renewTime must be MicroTimes (six fractional digits) or the write is refused with 400, as
// the real API server refuses a JavaScript Date's three digits.

import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { admitPod, type AdmissionCall, type ServiceAddress } from './admission.ts';
import { DISCOVERED_KINDS, discoveryDocument } from './discovery.ts';

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    uid?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

interface ResourceKind {
  readonly kind: string;
  readonly apiVersion: string;
  /** Path prefix before the namespace part: /api/v1 or /apis/<group>/<version>. */
  readonly prefix: string;
  readonly plural: string;
  readonly namespaced: boolean;
  /** It has a status subresource. */
  readonly status: boolean;
}

/** Every kind discovery names (the kinds Trellis reads and `trellis install` writes) but TokenReview, which is only created. */
const KINDS: readonly ResourceKind[] = DISCOVERED_KINDS.filter((k) => k.kind !== 'TokenReview').map((k) => ({
  kind: k.kind,
  apiVersion: k.groupVersion,
  prefix: k.groupVersion.includes('/') ? `/apis/${k.groupVersion}` : `/api/${k.groupVersion}`,
  plural: k.plural,
  namespaced: k.namespaced,
  status: k.status === true,
}));

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEvent {
  readonly rv: number;
  readonly kind: string;
  readonly type: EventType;
  readonly object: KubeObject;
}

interface WatchRequest {
  readonly kind: string;
  readonly namespace: string | null;
  readonly labelSelector: string | null;
  readonly fieldSelector: string | null;
}

interface OpenWatch extends WatchRequest {
  readonly res: ServerResponse;
  bookmarkTimer: NodeJS.Timeout | null;
}

export interface RequestRecord {
  readonly verb: 'list' | 'watch' | 'create' | 'patch' | 'update' | 'delete';
  /** 'status' for a write to the status subresource. */
  readonly subresource?: 'status';
  readonly kind: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
}

export interface FakeKubeOptions {
  /** How often a watch that asked for bookmarks gets one (the real server: about a minute). */
  readonly bookmarkIntervalMs?: number;
  /** Events kept for watches to resume from; older resource versions answer 410 Gone. */
  readonly historyLimit?: number;
}

const objectKey = (namespace: string | undefined, name: string): string => `${namespace ?? ''}/${name}`;

export class FakeKubeServer {
  readonly #server = createServer((req, res) => this.#handle(req, res));
  readonly #objects = new Map<string, Map<string, KubeObject>>(KINDS.map((k) => [k.kind, new Map()]));
  readonly #history: HistoryEvent[] = [];
  readonly #watches = new Set<OpenWatch>();
  readonly #bookmarkIntervalMs: number;
  readonly #historyLimit: number;
  /** The last resource version handed out (etcd's revision: one counter for every kind). */
  #revision = 100;
  /** Watches from a version below this one are too old (410 Gone). */
  #oldestRetained = 100;
  #uid = 0;
  readonly requests: RequestRecord[] = [];
  url = '';
  /** Kinds whose CRD is not installed: their list and watch answer 404 (as for a missing CRD). */
  readonly missingKinds = new Set<string>();
  /** What GET /version answers (a real server's version.Info), MAJOR.MINOR.PATCH. */
  kubernetesVersion = '1.32.0';

  constructor(options: FakeKubeOptions = {}) {
    this.#bookmarkIntervalMs = options.bookmarkIntervalMs ?? 60_000;
    this.#historyLimit = options.historyLimit ?? 10_000;
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    const { port } = this.#server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    return this.url;
  }

  async close(): Promise<void> {
    this.dropWatches({ abrupt: true });
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  get resourceVersion(): string {
    return String(this.#revision);
  }

  /** How many watch streams are open, per kind when `kind` is given. */
  watchCount(kind?: string): number {
    return [...this.#watches].filter((w) => kind === undefined || w.kind === kind).length;
  }

  countRequests(verb: RequestRecord['verb'], kind: string): number {
    return this.requests.filter((r) => r.verb === verb && r.kind === kind).length;
  }

  get(kind: string, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.#store(kind).get(objectKey(namespace, name));
  }

  list(kind: string): KubeObject[] {
    return [...this.#store(kind).values()];
  }

  /** Creates the object, or replaces it when it exists; returns the stored copy. */
  apply(object: KubeObject): KubeObject {
    const kind = this.#kindOf(object);
    const store = this.#store(kind.kind);
    const key = objectKey(object.metadata.namespace, object.metadata.name);
    const existing = store.get(key);
    const stored = structuredClone(object);
    stored.apiVersion = kind.apiVersion;
    stored.kind = kind.kind;
    stored.metadata.resourceVersion = String(++this.#revision);
    stored.metadata.uid = existing?.metadata.uid ?? object.metadata.uid ?? `uid-${++this.#uid}`;
    stored.metadata.creationTimestamp ??= new Date(0).toISOString();
    if (kind.status) {
      // As for a CRD with the status subresource: the main resource does not write the status,
      // and the generation counts changes of everything else (the spec).
      delete stored['status'];
      if (existing?.['status'] !== undefined) stored['status'] = existing['status'];
      const generation = Number(existing?.metadata['generation'] ?? 0);
      stored.metadata['generation'] =
        existing !== undefined && isDeepStrictEqual(existing['spec'], object['spec'])
          ? generation
          : generation + 1;
    }
    if (kind.kind === 'Secret' && stored['stringData'] !== undefined) {
      // As the API server does: stringData is written into data, base64, and not kept.
      const data = (stored['data'] ?? {}) as Record<string, string>;
      for (const [key, value] of Object.entries(stored['stringData'] as Record<string, string>)) {
        data[key] = Buffer.from(value).toString('base64');
      }
      stored['data'] = data;
      delete stored['stringData'];
    }
    store.set(key, stored);
    this.#record(kind.kind, existing ? 'MODIFIED' : 'ADDED', stored);
    return stored;
  }

  /** Applies every document of a multi-document YAML text (kubectl get -o yaml shaped). */
  applyYaml(text: string): KubeObject[] {
    return parseAllDocuments(text)
      .map((doc) => doc.toJS() as KubeObject | null)
      .filter((o): o is KubeObject => o !== null)
      .flatMap((o) => (o.kind === 'List' ? (o.items as KubeObject[]) : [o]))
      .map((o) => this.apply(o));
  }

  delete(kind: string, namespace: string | undefined, name: string): boolean {
    const store = this.#store(kind);
    const key = objectKey(namespace, name);
    const existing = store.get(key);
    if (!existing) return false;
    store.delete(key);
    const gone = structuredClone(existing);
    gone.metadata.resourceVersion = String(++this.#revision);
    this.#record(kind, 'DELETED', gone);
    return true;
  }

  /**
   * A write to one stored object, as the API server answers it: PATCH (a JSON merge patch) or PUT
   * (the whole object) of the object or of its status subresource. A metadata.resourceVersion in
   * the body is a precondition (409 Conflict when the object moved on); the status subresource
   * changes only the status, the main resource everything but it (for kinds that have one).
   */
  write(
    kind: string,
    namespace: string | undefined,
    name: string,
    body: KubeObject | Record<string, unknown>,
    how: { mode: 'merge' | 'replace'; status: boolean },
  ): { status: number; body: unknown } {
    const resource = KINDS.find((k) => k.kind === kind);
    const existing = this.get(kind, namespace, name);
    if (resource === undefined || existing === undefined || (how.status && !resource.status))
      return {
        status: 404,
        body: statusObject(404, 'NotFound', `${resource?.plural ?? kind} "${name}" not found`),
      };
    const precondition = (body as { metadata?: { resourceVersion?: unknown } }).metadata?.resourceVersion;
    if (
      precondition !== undefined &&
      precondition !== null &&
      precondition !== existing.metadata.resourceVersion
    )
      return {
        status: 409,
        body: statusObject(
          409,
          'Conflict',
          `Operation cannot be fulfilled on ${resource.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        ),
      };
    const next =
      how.mode === 'merge'
        ? (mergePatch(existing, body) as KubeObject)
        : ({
            ...structuredClone(body),
            metadata: { ...existing.metadata, ...(body as KubeObject).metadata },
          } as KubeObject);
    next.metadata.name = name;
    if (namespace !== undefined) next.metadata.namespace = namespace;
    next.metadata.creationTimestamp = existing.metadata.creationTimestamp;
    const invalid = invalidFields(kind, next);
    if (invalid !== null) return { status: 400, body: statusObject(400, 'BadRequest', invalid) };
    if (!how.status) return { status: 200, body: this.apply(next) };
    // The status subresource: everything but the status stays as stored.
    const stored = structuredClone(existing);
    if (next['status'] === undefined) delete stored['status'];
    else stored['status'] = next['status'];
    stored.metadata.resourceVersion = String(++this.#revision);
    this.#store(kind).set(objectKey(namespace, name), stored);
    this.#record(kind, 'MODIFIED', stored);
    return { status: 200, body: stored };
  }

  /** Ends every open watch: gracefully (the stream ends) or abruptly (the socket is destroyed). */
  dropWatches(options: { abrupt?: boolean } = {}): void {
    for (const watch of [...this.#watches]) {
      this.#closeWatch(watch);
      if (options.abrupt) watch.res.socket?.destroy();
      else watch.res.end();
    }
  }

  /**
   * Compacts the history: a watch resuming from any version handed out so far now gets 410 Gone
   * (open watches go on; drop them to make clients resume). Like etcd, whose revision is shared by
   * the whole cluster, the revision moves on, so a fresh list's version stays watchable.
   */
  compact(): void {
    this.#history.length = 0;
    this.#revision += 1;
    this.#oldestRetained = this.#revision + 1;
  }

  #store(kind: string): Map<string, KubeObject> {
    const store = this.#objects.get(kind);
    if (!store) throw new Error(`fake-kube: unknown kind ${kind}`);
    return store;
  }

  #kindOf(object: KubeObject): ResourceKind {
    const kind = KINDS.find((k) => k.kind === object.kind);
    if (!kind) throw new Error(`fake-kube: unsupported kind ${String(object.kind)}`);
    return kind;
  }

  #record(kind: string, type: EventType, object: KubeObject): void {
    const event: HistoryEvent = { rv: this.#revision, kind, type, object };
    this.#history.push(event);
    if (this.#history.length > this.#historyLimit) {
      const dropped = this.#history.shift();
      if (dropped) this.#oldestRetained = dropped.rv + 1;
    }
    for (const watch of this.#watches) {
      if (this.#matches(watch, kind, object)) this.#send(watch, type, object);
    }
  }

  #matches(request: WatchRequest, kind: string, object: KubeObject): boolean {
    if (request.kind !== kind) return false;
    if (request.namespace !== null && object.metadata.namespace !== request.namespace) return false;
    if (request.labelSelector && !matchesLabelSelector(request.labelSelector, object.metadata.labels ?? {})) {
      return false;
    }
    return !request.fieldSelector || matchesFieldSelector(request.fieldSelector, object);
  }

  #send(watch: OpenWatch, type: string, object: unknown): void {
    if (!watch.res.writableEnded && !watch.res.destroyed)
      watch.res.write(`${JSON.stringify({ type, object })}\n`);
  }

  #closeWatch(watch: OpenWatch): void {
    if (watch.bookmarkTimer) clearInterval(watch.bookmarkTimer);
    watch.bookmarkTimer = null;
    this.#watches.delete(watch);
  }

  /**
   * Handlers for POSTs ("create" calls such as TokenReview), by exact path. A handler gets the
   * parsed JSON body and the request's headers and answers with a status and a JSON body.
   */
  readonly postHandlers = new Map<
    string,
    (body: unknown, headers: IncomingMessage['headers']) => { status: number; body: unknown }
  >();

  /** Where the Services of admission webhooks run (admission.ts); none by default. */
  serviceAddress: ServiceAddress = () => undefined;
  /** Every call to a webhook, in order. */
  readonly admissionCalls: AdmissionCall[] = [];

  /** A Pod created by POST: through the mutating webhooks, then stored (201), as the real server. */
  async #createPod(namespace: string, body: Buffer, res: ServerResponse): Promise<void> {
    let pod: KubeObject;
    try {
      pod = JSON.parse(body.toString('utf8')) as KubeObject;
      if (typeof pod.metadata?.name !== 'string') throw new Error('metadata.name is required');
    } catch (error) {
      sendStatus(res, 400, 'BadRequest', (error as Error).message);
      return;
    }
    pod.metadata.namespace = namespace;
    try {
      const admitted = await admitPod(
        pod,
        namespace,
        this.get('Namespace', undefined, namespace)?.metadata.labels ?? {},
        this.list('MutatingWebhookConfiguration'),
        this.serviceAddress,
        this.admissionCalls,
      );
      const stored = this.apply({ ...admitted, apiVersion: 'v1', kind: 'Pod' });
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stored));
    } catch (error) {
      sendStatus(
        res,
        500,
        'InternalError',
        `Internal error occurred: failed calling ${(error as Error).message}`,
      );
    }
  }

  #handlePost(req: IncomingMessage, res: ServerResponse, path: string): void {
    const handler = this.postHandlers.get(path);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const podCreate = /^\/api\/v1\/namespaces\/([a-z0-9-]+)\/pods$/.exec(path);
      if (handler === undefined && podCreate !== null) {
        void this.#createPod(podCreate[1]!, Buffer.concat(chunks), res);
        return;
      }
      const collection = handler === undefined ? parsePath(path) : null;
      if (collection !== null) {
        this.#create(collection, Buffer.concat(chunks), res);
        return;
      }
      if (handler === undefined) {
        sendStatus(res, 404, 'NotFound', `the server could not find the requested resource`);
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        sendStatus(res, 400, 'BadRequest', 'the request body is not JSON');
        return;
      }
      const answer = handler(body, req.headers);
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    });
  }

  /** POST to a collection: the object stored (201), or 409 when it exists. */
  #create(
    collection: { kind: ResourceKind; namespace: string | null },
    body: Buffer,
    res: ServerResponse,
  ): void {
    let object: KubeObject;
    try {
      object = JSON.parse(body.toString('utf8')) as KubeObject;
      if (typeof object.metadata?.name !== 'string') throw new Error('metadata.name is required');
    } catch (error) {
      sendStatus(res, 400, 'BadRequest', (error as Error).message);
      return;
    }
    const { kind } = collection;
    if (collection.namespace !== null) object.metadata.namespace = collection.namespace;
    this.requests.push({ verb: 'create', kind: kind.kind, path: `${kind.prefix}/${kind.plural}`, query: {} });
    if (this.get(kind.kind, object.metadata.namespace, object.metadata.name) !== undefined) {
      sendStatus(res, 409, 'AlreadyExists', `${kind.plural} "${object.metadata.name}" already exists`);
      return;
    }
    const invalid = invalidFields(kind.kind, object);
    if (invalid !== null) {
      sendStatus(res, 400, 'BadRequest', invalid);
      return;
    }
    res.writeHead(201, { 'content-type': 'application/json' });
    res.end(JSON.stringify(this.apply({ ...object, apiVersion: kind.apiVersion, kind: kind.kind })));
  }

  /** DELETE of one object (no finalizers here: it is gone at once): 200 with the object as it was. */
  #handleDelete(res: ServerResponse, pathname: string): void {
    const one = parseObjectPath(pathname);
    if (one === null) {
      sendStatus(res, 404, 'NotFound', `the server could not find the requested resource`);
      return;
    }
    const existing = this.get(one.kind.kind, one.namespace, one.name);
    if (existing === undefined || !this.delete(one.kind.kind, one.namespace, one.name)) {
      sendStatus(res, 404, 'NotFound', `${one.kind.plural} "${one.name}" not found`);
      return;
    }
    this.requests.push({ verb: 'delete', kind: one.kind.kind, path: pathname, query: {} });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(existing));
  }

  /** PATCH (merge patch only) or PUT of one object or of its status subresource. */
  #handleWrite(req: IncomingMessage, res: ServerResponse, url: URL): void {
    // PATH/NAME/status is the status subresource of NAME; PATH/status alone, an object named status.
    const statusOf = url.pathname.endsWith('/status')
      ? parseObjectPath(url.pathname.slice(0, -'/status'.length))
      : null;
    const status = statusOf !== null;
    const one = statusOf ?? parseObjectPath(url.pathname);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (one === null) {
        sendStatus(res, 404, 'NotFound', `the server could not find the requested resource`);
        return;
      }
      const mode = req.method === 'PATCH' ? 'merge' : 'replace';
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
      if (mode === 'merge' && type !== 'application/merge-patch+json') {
        sendStatus(
          res,
          415,
          'UnsupportedMediaType',
          `the body of the request was in an unknown format: ${type}`,
        );
        return;
      }
      this.requests.push({
        verb: mode === 'merge' ? 'patch' : 'update',
        kind: one.kind.kind,
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        ...(status ? { subresource: 'status' as const } : {}),
      });
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        if (typeof body !== 'object' || body === null || Array.isArray(body))
          throw new Error('not an object');
      } catch {
        sendStatus(res, 400, 'BadRequest', 'the request body is not a JSON object');
        return;
      }
      const answer = this.write(one.kind.kind, one.namespace, one.name, body, { mode, status });
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    });
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake-kube');
    if (req.method === 'PATCH' || req.method === 'PUT') {
      this.#handleWrite(req, res, url);
      return;
    }
    if (req.method === 'POST') {
      this.#handlePost(req, res, url.pathname);
      return;
    }
    if (req.method === 'DELETE') {
      this.#handleDelete(res, url.pathname);
      return;
    }
    if (req.method === 'GET' && (url.pathname === '/version' || url.pathname === '/version/')) {
      const [major, minor] = this.kubernetesVersion.split('.');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          major,
          minor,
          gitVersion: `v${this.kubernetesVersion}`,
          gitCommit: '0000000000000000000000000000000000000000',
          gitTreeState: 'clean',
          buildDate: '2026-01-01T00:00:00Z',
          goVersion: 'go1.23.0',
          compiler: 'gc',
          platform: 'linux/amd64',
        }),
      );
      return;
    }
    const podProxy = req.method === 'GET' ? POD_PROXY.exec(url.pathname) : null;
    if (podProxy !== null) {
      this.#relayToPod(res, podProxy, url.search);
      return;
    }
    const discovery = req.method === 'GET' ? discoveryDocument(url.pathname) : null;
    if (discovery !== null) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(discovery));
      return;
    }
    const one = req.method === 'GET' ? parseObjectPath(url.pathname) : null;
    if (one !== null) {
      const object = this.get(one.kind.kind, one.namespace, one.name);
      if (object === undefined)
        sendStatus(res, 404, 'NotFound', `${one.kind.plural} "${one.name}" not found`);
      else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(object));
      }
      return;
    }
    const route = parsePath(url.pathname);
    if (req.method !== 'GET' || !route) {
      sendStatus(res, 404, 'NotFound', `the server could not find the requested resource`);
      return;
    }
    if (this.missingKinds.has(route.kind.kind)) {
      sendStatus(res, 404, 'NotFound', `the server could not find the requested resource`);
      return;
    }
    const query = Object.fromEntries(url.searchParams);
    const request: WatchRequest = {
      kind: route.kind.kind,
      namespace: route.namespace,
      labelSelector: url.searchParams.get('labelSelector'),
      fieldSelector: url.searchParams.get('fieldSelector'),
    };
    const watching = ['true', '1'].includes(url.searchParams.get('watch') ?? '');
    this.requests.push({
      verb: watching ? 'watch' : 'list',
      kind: route.kind.kind,
      path: url.pathname,
      query,
    });
    if (watching) this.#serveWatch(request, url.searchParams, res);
    else this.#serveList(route.kind, request, res);
  }

  /** The pods/proxy subresource: a GET relayed to the pod's IP and port (80 when none is named). */
  #relayToPod(res: ServerResponse, match: RegExpExecArray, search: string): void {
    const [, namespace, nameAndPort, path] = match;
    const [name, port = '80'] = decodeURIComponent(nameAndPort!).split(':');
    const pod = this.get('Pod', decodeURIComponent(namespace!), name!);
    if (pod === undefined) {
      sendStatus(res, 404, 'NotFound', `pods "${name}" not found`);
      return;
    }
    const podIP = (pod['status'] as { podIP?: string } | undefined)?.podIP;
    if (podIP === undefined) {
      sendStatus(res, 503, 'ServiceUnavailable', `pod ${name} has no IP address`);
      return;
    }
    const upstream = httpRequest(
      { host: podIP, port: Number(port), path: `${path ?? '/'}${search}`, timeout: 3000 },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, {
          'content-type': answer.headers['content-type'] ?? 'text/plain',
        });
        answer.pipe(res);
      },
    );
    const unreachable = (err: Error) => {
      if (!res.headersSent)
        sendStatus(res, 503, 'ServiceUnavailable', `error trying to reach service: ${err.message}`);
      else res.destroy();
    };
    upstream.on('timeout', () => upstream.destroy(new Error('timeout')));
    upstream.on('error', unreachable);
    upstream.end();
  }

  #serveList(kind: ResourceKind, request: WatchRequest, res: ServerResponse): void {
    const items = this.list(kind.kind).filter((o) => this.#matches(request, kind.kind, o));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        kind: `${kind.kind}List`,
        apiVersion: kind.apiVersion,
        metadata: { resourceVersion: this.resourceVersion },
        items,
      }),
    );
  }

  #serveWatch(request: WatchRequest, params: URLSearchParams, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const watch: OpenWatch = { ...request, res, bookmarkTimer: null };
    const from = params.get('resourceVersion') ?? '';
    if (from !== '' && from !== '0' && Number(from) < this.#oldestRetained - 1) {
      const message = `too old resource version: ${from} (${this.#oldestRetained - 1})`;
      this.#send(watch, 'ERROR', statusObject(410, 'Expired', message));
      res.end();
      return;
    }
    this.#watches.add(watch);
    res.on('close', () => this.#closeWatch(watch));
    if (from === '' || from === '0') {
      // No version: the current state as synthetic ADDED events, then changes.
      for (const object of this.list(request.kind)) {
        if (this.#matches(request, request.kind, object)) this.#send(watch, 'ADDED', object);
      }
    } else {
      for (const event of this.#history) {
        if (event.rv > Number(from) && this.#matches(request, event.kind, event.object)) {
          this.#send(watch, event.type, event.object);
        }
      }
    }
    if (params.get('allowWatchBookmarks') === 'true') {
      const kind = KINDS.find((k) => k.kind === request.kind);
      watch.bookmarkTimer = setInterval(() => {
        this.#send(watch, 'BOOKMARK', {
          kind: kind?.kind,
          apiVersion: kind?.apiVersion,
          metadata: { resourceVersion: this.resourceVersion },
        });
      }, this.#bookmarkIntervalMs);
    }
  }
}

function parsePath(pathname: string): { kind: ResourceKind; namespace: string | null } | null {
  for (const kind of KINDS) {
    if (pathname === `${kind.prefix}/${kind.plural}`) return { kind, namespace: null };
    const namespaced = new RegExp(`^${kind.prefix}/namespaces/([a-z0-9-]+)/${kind.plural}$`).exec(pathname);
    if (namespaced?.[1]) return { kind, namespace: namespaced[1] };
  }
  return null;
}

/** A GET of one object: /api/v1/namespaces/NAME, or PREFIX/namespaces/NS/PLURAL/NAME. */
function parseObjectPath(
  pathname: string,
): { kind: ResourceKind; namespace: string | undefined; name: string } | null {
  for (const kind of KINDS) {
    const namespaced = new RegExp(
      `^${kind.prefix}/namespaces/([a-z0-9-]+)/${kind.plural}/([a-z0-9.-]+)$`,
    ).exec(pathname);
    if (namespaced) return { kind, namespace: namespaced[1], name: namespaced[2]! };
    const cluster = new RegExp(`^${kind.prefix}/${kind.plural}/([a-z0-9.-]+)$`).exec(pathname);
    // /api/v1/namespaces/NS/... is a namespaced path, not a Namespace called NS.
    if (cluster && !kind.namespaced) return { kind, namespace: undefined, name: cluster[1]! };
  }
  return null;
}

/** Kubernetes' MicroTime (metav1.RFC3339Micro): exactly six fractional digits. */
const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$/;

/** Why the API server could not decode the object (a Lease time that is not a MicroTime), or null. */
function invalidFields(kind: string, object: KubeObject | Record<string, unknown>): string | null {
  if (kind !== 'Lease') return null;
  const spec = (object['spec'] ?? {}) as Record<string, unknown>;
  for (const field of ['acquireTime', 'renewTime']) {
    const value = spec[field];
    if (value !== undefined && value !== null && (typeof value !== 'string' || !MICRO_TIME.test(value)))
      return `Lease in version "v1" cannot be handled as a Lease: parsing time ${JSON.stringify(value)} as "2006-01-02T15:04:05.000000Z07:00": cannot parse spec.${field}`;
  }
  return null;
}

function statusObject(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

const POD_PROXY = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/proxy(\/.*)?$/;

function sendStatus(res: ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(statusObject(code, reason, message)));
}

/** Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a` (exists), `!a` (absent). */
export function matchesLabelSelector(selector: string, labels: Readonly<Record<string, string>>): boolean {
  return selector
    .split(',')
    .map((term) => term.trim())
    .filter((term) => term !== '')
    .every((term) => {
      const notEqual = /^([^!=]+)!=(.*)$/.exec(term);
      if (notEqual) return labels[notEqual[1]!.trim()] !== notEqual[2]!.trim();
      const equal = /^([^!=]+)==?(.*)$/.exec(term);
      if (equal) return labels[equal[1]!.trim()] === equal[2]!.trim();
      if (term.startsWith('!')) return !(term.slice(1) in labels);
      return term in labels;
    });
}

/** Field selectors on metadata.name and metadata.namespace (`=`, `==`, `!=`). */
export function matchesFieldSelector(selector: string, object: KubeObject): boolean {
  return selector
    .split(',')
    .filter((term) => term.trim() !== '')
    .every((term) => {
      const match = /^([^!=]+)(!=|==|=)(.*)$/.exec(term.trim());
      if (!match) return false;
      const field = match[1]!.trim();
      const actual =
        field === 'metadata.name'
          ? object.metadata.name
          : field === 'metadata.namespace'
            ? object.metadata.namespace
            : undefined;
      return match[2] === '!=' ? actual !== match[3] : actual === match[3];
    });
}

/** RFC 7386 JSON merge patch: objects merge key by key, null deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return structuredClone(patch);
  const out: Record<string, unknown> =
    typeof target === 'object' && target !== null && !Array.isArray(target)
      ? structuredClone(target as Record<string, unknown>)
      : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}
