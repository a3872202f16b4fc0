// Starts the real system for the tests: `aijobs serve` and `aijobs worker` from the repository's
// Python environment, on a free port, with a temporary AIJOBS_HOME and the demo data.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const packageDir = path.resolve(here, '..');
export const repoRoot = path.resolve(packageDir, '..', '..');
export const python = process.env.AIJOBS_PYTHON ?? path.join(repoRoot, '.venv', 'bin', 'python');

/** Why the server cannot be started here (a reason to skip), or null. */
export function pythonMissing() {
  return existsSync(python) ? null : `no Python environment at ${python} (run make install, or set AIJOBS_PYTHON)`;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function until(what, predicate, timeoutMs, proc, logFile) {
  // A monotonic clock: a step of the wall clock once ended this wait after 5 s of its 30.
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (proc.exitCode !== null) {
      throw new Error(`${what} exited with ${proc.exitCode}:\n${readFileSync(logFile, 'utf8')}`);
    }
    try {
      if (await predicate()) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not start within ${timeoutMs}ms:\n${readFileSync(logFile, 'utf8')}`);
}

export async function startSystem({ queues = ['sklearn'] } = {}) {
  const home = mkdtempSync(path.join(tmpdir(), 'aijobs-js-'));
  const data = path.join(home, 'data');
  // The demo data is written while the API starts (the workers need it, the API does not).
  const demoData = new Promise((resolve, reject) => {
    execFile(python, ['-m', 'aijobs', 'demo-data', data], (err) => (err ? reject(err) : resolve()));
  });
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = {
    ...process.env,
    AIJOBS_HOME: path.join(home, 'var'),
    AIJOBS_DATA_ROOTS: data,
    AIJOBS_LEASE_SECONDS: '3',
    AIJOBS_WORKER_TTL_SECONDS: '3',
    AIJOBS_KILL_GRACE_SECONDS: '1',
    AIJOBS_SHUTDOWN_GRACE_SECONDS: '5',
  };
  const logFile = path.join(home, 'system.log');
  const log = openSync(logFile, 'a');
  const procs = [];
  // Never leave a server behind, even when the test process dies early.
  process.once('exit', () => procs.forEach((proc) => proc.exitCode === null && proc.kill('SIGKILL')));
  const start = (...args) => {
    const proc = spawn(python, ['-m', 'aijobs', ...args], { env, stdio: ['ignore', log, log] });
    procs.push(proc);
    return proc;
  };
  const system = {
    url,
    home,
    data,
    async stop() {
      await Promise.all(
        procs.map(
          (proc) =>
            new Promise((resolve) => {
              if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
              const kill = setTimeout(() => proc.kill('SIGKILL'), 15000);
              proc.once('exit', () => {
                clearTimeout(kill);
                resolve();
              });
              proc.kill('SIGTERM');
            }),
        ),
      );
      rmSync(home, { recursive: true, force: true });
    },
  };
  try {
    const api = start('serve', '--port', String(port));
    await until('the API', async () => (await fetch(`${url}/health`)).ok, 30000, api, logFile);
    await demoData;
    for (const queue of queues) {
      const worker = start('worker', '--queue', queue);
      const registered = async () => {
        const { workers } = await (await fetch(`${url}/workers`)).json();
        return workers.some((w) => w.pid === worker.pid);
      };
      await until(`the ${queue} worker`, registered, 30000, worker, logFile);
    }
  } catch (err) {
    await demoData.catch(() => {});
    await system.stop();
    throw err;
  }
  return system;
}
