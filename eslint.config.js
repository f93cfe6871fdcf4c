// Lint rules for the whole repository: typescript-eslint's recommended type-aware-free set, and
// the direction of the modules in src/ (docs/architecture.md#layout).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The module direction: cli -> control, proxy -> api -> core. Each block forbids a directory's
// files to import the directories above it, matched on the relative path ("../../proxy/x.ts").
// test/, bench/, fuzz/ and scripts/ may import anything.
const above = (dirs, slash = '/') => `^(?:\\.\\.${slash})+(?:${dirs.join('|')})(?:${slash}|$)`;
const layer = (dir, forbidden, why) => {
  const message = `src/${dir} must not import src/{${forbidden.join(',')}}: ${why} (docs/architecture.md#layout)`;
  return {
    files: [`src/${dir}/**/*.ts`],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ regex: above(forbidden), message }] }],
      // no-restricted-imports does not see import(); this does (an esquery regex cannot hold "/").
      'no-restricted-syntax': [
        'error',
        { selector: `ImportExpression[source.value=/${above(forbidden, '\\x2F')}/]`, message },
      ],
    },
  };
};

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'bench/results/', '.trellis/', 'src/api/gen/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  layer('control', ['proxy', 'cli'], 'shared vocabulary lives in src/core or src/api'),
  layer('proxy', ['control', 'cli'], 'shared vocabulary lives in src/core or src/api'),
  // Inside the proxy, the protocol handlers know nothing of the mesh transport: endpoints are
  // reached through outbound/balance.ts and the connectors handed to them, policy through the
  // seams of policy/inbound-hooks.ts. (One block per folder replaces the proxy block's rule, so
  // it repeats the tiers above.)
  layer('proxy/http', ['mesh', 'control', 'cli'], 'the mesh is reached through the connectors it is given'),
  layer('proxy/tcp', ['mesh', 'control', 'cli'], 'the mesh is reached through the connectors it is given'),
  layer('api', ['control', 'proxy', 'cli'], 'the API depends only on src/core'),
  layer('core', ['api', 'control', 'proxy', 'cli'], 'src/core depends on nothing of the project'),
);
