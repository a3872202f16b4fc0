// `npm pack` makes a package that installs (offline: it has no dependencies) and imports.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { packageDir } from './harness.js';

function npmMissing() {
  try {
    execFileSync('npm', ['--version'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'npm is not installed';
  }
}

test('npm pack produces a package that installs and imports', { skip: npmMissing() ?? false }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'aijobs-pack-'));
  try {
    const npm = (args, cwd) =>
      execFileSync('npm', [...args, '--cache', path.join(dir, 'cache')], { cwd, encoding: 'utf8' });
    const [packed] = JSON.parse(npm(['pack', '--json', '--pack-destination', dir], packageDir));
    assert.deepEqual(packed.files.map((f) => f.path).sort(), ['README.md', 'index.d.ts', 'index.js', 'package.json']);

    const app = path.join(dir, 'app');
    mkdirSync(app);
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    npm(['install', '--offline', '--no-audit', '--no-fund', path.join(dir, packed.filename)], app);

    const probe = `
      import Default, { AIJobClient, AIJobsError, AIJobsConnectionError, TERMINAL_STATES } from 'aijobs-client';
      const c = new AIJobClient('http://example.invalid:8000/');
      console.log(JSON.stringify({
        same: Default === AIJobClient, url: c.baseUrl, terminal: TERMINAL_STATES,
        methods: ['submitTrainingJob', 'submitInferenceJob', 'getJobStatus', 'waitForCompletion',
                  'cancelJob', 'listJobs', 'iterJobs', 'getJobLogs', 'listModels', 'listQueues']
          .filter((m) => typeof c[m] === 'function').length,
        errors: new AIJobsConnectionError('x') instanceof AIJobsError,
      }));`;
    const out = JSON.parse(execFileSync('node', ['--input-type=module', '-e', probe], { cwd: app, encoding: 'utf8' }));
    assert.deepEqual(out, {
      same: true,
      url: 'http://example.invalid:8000',
      terminal: ['completed', 'failed', 'cancelled'],
      methods: 10,
      errors: true,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
