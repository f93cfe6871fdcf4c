// Route header filters on the HTTP/2 path (withModifiedHeaders): what they give must be a header
// object node:http2 sends. A RequestHeaderModifier `add` on a field node keeps single-valued
// (content-type, user-agent, authorization...) made a list node refuses: every matching request
// got 400 and every matching response 502 (found attacking traffic management).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import type net from 'node:net';
import { test } from 'node:test';
import { NODE_SINGLE_VALUE_HEADERS, withModifiedHeaders } from '../../src/proxy/http/h2-headers.ts';

const add = (name: string, value: string) => ({ set: [], add: [{ name, value }], remove: [] });

test('add on a field node:http2 keeps single-valued joins the values; on others it adds a line', async () => {
  const seen: http2.IncomingHttpHeaders[] = [];
  const server = http2.createServer((req, res) => {
    seen.push(req.headers);
    res.end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const session = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
  try {
    for (const name of [...NODE_SINGLE_VALUE_HEADERS].filter(
      (n) => !['content-length', 'host'].includes(n),
    )) {
      const headers = withModifiedHeaders({ ':method': 'POST', ':path': '/', [name]: 'one' }, [
        add(name, 'two'),
      ]);
      assert.equal(headers[name], 'one, two', name);
      const req = session.request(headers); // node throws ERR_HTTP2_HEADER_SINGLE_VALUE on a list
      req.end();
      req.resume();
      await once(req, 'close');
      assert.equal(seen.at(-1)![name], 'one, two', name);
    }
    const listed = withModifiedHeaders({ ':method': 'GET', ':path': '/', 'x-tag': 'one' }, [
      add('x-tag', 'two'),
    ]);
    assert.deepEqual(listed['x-tag'], ['one', 'two']);
    // Every name in the list is one node refuses as a list (the list is node's, written out).
    for (const name of NODE_SINGLE_VALUE_HEADERS) {
      assert.throws(
        () => session.request({ ':path': '/', [name]: ['a', 'b'] }),
        { code: 'ERR_HTTP2_HEADER_SINGLE_VALUE' },
        name,
      );
    }
    // A name node keeps single-valued, given twice by set + add, joins too.
    const setAdd = withModifiedHeaders({ ':method': 'GET', ':path': '/' }, [
      { set: [{ name: 'User-Agent', value: 'a' }], add: [{ name: 'user-agent', value: 'b' }], remove: [] },
    ]);
    assert.equal(setAdd['user-agent'], 'a, b');
  } finally {
    session.close();
    server.close();
  }
});
