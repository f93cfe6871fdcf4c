// The one table of HTTP reason phrases (src/proxy/http/reason-phrases.ts): every status the proxy
// answers with itself has its standard phrase, and an unlisted status still gets a generic one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PROXY_ERROR_REASONS, statusForReason } from '../../src/proxy/errors.ts';
import { errorResponse } from '../../src/proxy/http/h1-serialize.ts';
import { reasonPhrase } from '../../src/proxy/http/reason-phrases.ts';

test('every status of a trellis-proxy-error reason has its standard phrase, also in the response', () => {
  for (const reason of PROXY_ERROR_REASONS) {
    const status = statusForReason(reason);
    assert.notEqual(reasonPhrase(status), 'Error', `${reason} (${status})`);
    const head = errorResponse(reason, 'x', true).toString('latin1').split('\r\n')[0];
    assert.equal(head, `HTTP/1.1 ${status} ${reasonPhrase(status)}`);
  }
  // Statuses the HTTP/1 paths and the admin listener pass explicitly.
  assert.deepEqual([200, 202, 401, 404, 405, 408, 414, 500, 501, 505].map(reasonPhrase), [
    'OK',
    'Accepted',
    'Unauthorized',
    'Not Found',
    'Method Not Allowed',
    'Request Timeout',
    'URI Too Long',
    'Internal Server Error',
    'Not Implemented',
    'HTTP Version Not Supported',
  ]);
});

test('an unlisted status gets a generic phrase: OK below 400, Error from 400', () => {
  assert.equal(reasonPhrase(299), 'OK');
  assert.equal(reasonPhrase(199), 'OK');
  assert.equal(reasonPhrase(418), 'Error');
  assert.equal(reasonPhrase(599), 'Error');
});
