// The SDK against a real server and a real scikit-learn worker (started by ./harness.js).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  AIJobClient,
  AIJobsConnectionError,
  AIJobsError,
  AIJobsTimeoutError,
  isTerminal,
} from '../index.js';
import { freePort, pythonMissing, startSystem } from './harness.js';

const missing = pythonMissing();
if (missing) console.log(`# skipping the SDK tests: ${missing}`);

const FOREST = {
  hyperparameters: { n_estimators: 20, max_depth: 5, random_state: 42 },
  description: 'Train Random Forest for classification',
  requires_gpu: false,
  framework_override: 'sklearn',
};

async function elapsed(promise) {
  const start = performance.now();
  const value = await promise;
  return [value, performance.now() - start];
}

describe('AIJobClient against a running server', { skip: missing ?? false }, () => {
  let system;
  let client;
  let modelId;

  before(async () => {
    system = await startSystem();
    client = new AIJobClient(system.url);
  });

  after(async () => {
    await system?.stop();
  });

  test('health', async () => {
    const health = await client.health();
    assert.equal(health.status, 'healthy');
    assert.equal(health.version, '1.0.0');
  });

  test('train, wait on the long-poll, then infer with the model', async () => {
    const job = await client.submitTrainingJob('random_forest', '/data/tabular_data.csv', FOREST);
    assert.equal(job.status, 'queued');
    assert.match(job.job_id, /^job_[0-9a-f-]{36}$/);
    assert.equal(job.queue, 'sklearn');
    assert.equal(job.queue_has_worker, true);

    const updates = [];
    const done = await client.waitForCompletion(job.job_id, 60000, { onUpdate: (s) => updates.push(s) });
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(done.progress, 1);
    assert.ok(done.result.metrics.accuracy > 0.8);
    assert.equal(updates.at(-1), done);
    modelId = done.result.model_id;

    const first = await client.submitInferenceJob(modelId, '5.1,3.5,1.4,0.2', { parameters: { probability: true } });
    const out = await client.waitForCompletion(first.job_id);
    assert.equal(out.status, 'completed');
    assert.deepEqual(out.result.predictions, ['setosa']);

    // Warm: the end of a few-millisecond job is seen at once, not after a polling interval.
    const [quick, ms] = await elapsed(
      client
        .submitInferenceJob(modelId, '6.7,3.0,5.2,2.3')
        .then((j) => client.waitForCompletion(j.job_id)),
    );
    assert.equal(quick.status, 'completed');
    assert.deepEqual(quick.result.predictions, ['virginica']);
    assert.ok(ms < 1500, `warm inference seen after ${ms}ms`);

    assert.match(await client.getJobLogs(job.job_id), /\S/);
    const models = await client.listModels();
    assert.ok(models.some((m) => m.model_id === modelId && m.framework === 'sklearn'));
  });

  test('long-poll on a queue without a worker answers after the wait, still pending', async () => {
    const job = await client.submitTrainingJob('inception', '/data/cifar10', { framework_override: 'tensorflow' });
    assert.equal(job.queue, 'tensorflow');
    assert.equal(job.queue_has_worker, false);
    const [status, ms] = await elapsed(client.getJobStatus(job.job_id, { wait: 1 }));
    assert.equal(status.status, 'pending');
    assert.ok(ms >= 900 && ms < 3000, `long-poll answered after ${ms}ms`);

    await assert.rejects(client.waitForCompletion(job.job_id, 300), (err) => {
      assert.ok(err instanceof AIJobsTimeoutError);
      assert.equal(err.last.status, 'pending');
      return true;
    });

    // Cancelled is terminal: the wait ends at once instead of running out its timeout.
    const waiting = elapsed(client.waitForCompletion(job.job_id, 30000));
    const cancelled = await client.cancelJob(job.job_id);
    assert.equal(cancelled.status, 'cancelled');
    const [final, waited] = await waiting;
    assert.equal(final.status, 'cancelled');
    assert.ok(isTerminal(final));
    assert.ok(waited < 2000, `cancel seen after ${waited}ms`);

    await assert.rejects(client.cancelJob(job.job_id), (err) => {
      assert.ok(err instanceof AIJobsError);
      assert.equal(err.statusCode, 400);
      assert.equal(err.error, 'Job cannot be cancelled');
      return true;
    });
    const queues = await client.listQueues();
    assert.equal(queues.find((q) => q.queue === 'tensorflow').has_worker, false);
    assert.ok(queues.find((q) => q.queue === 'sklearn').has_worker);
  });

  test('an AbortSignal stops a long-poll at once', async () => {
    const job = await client.submitTrainingJob('resnet', '/data/image_classification', {});
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    const start = performance.now();
    await assert.rejects(
      client.waitForCompletion(job.job_id, 60000, { signal: controller.signal }),
      (err) => err.name === 'AbortError',
    );
    assert.ok(performance.now() - start < 2000);
    await client.cancelJob(job.job_id);
  });

  test('errors carry the envelope: unknown job (404), validation error (422), bad input (400)', async () => {
    await assert.rejects(client.getJobStatus('job_00000000-0000-4000-8000-000000000000'), (err) => {
      assert.ok(err instanceof AIJobsError);
      assert.equal(err.statusCode, 404);
      assert.equal(err.error, 'Job not found');
      assert.match(err.detail, /not found/);
      return true;
    });
    await assert.rejects(
      client.submitTrainingJob('random_forest', '/data/tabular_data.csv', { priority: 5000 }),
      (err) => err.statusCode === 422 && err.error === 'Validation error' && /priority/.test(err.detail),
    );
    await assert.rejects(
      client.submitTrainingJob('random_forest', '/data/tabular_data.csv', { framework_override: 'cobol' }),
      (err) => err.statusCode === 400 && /framework_override/.test(err.detail),
    );
  });

  test('watchJob follows the event stream to the end; lastEventId resumes after any event', async () => {
    const job = await client.submitTrainingJob('random_forest', '/data/tabular_data.csv', FOREST);
    const events = [];
    const final = await client.watchJob(job.job_id, (event) => events.push(event));
    assert.equal(final.status, 'completed', JSON.stringify(final));
    assert.equal(events.at(-1).event, 'state');
    assert.equal(events.at(-1).data.status, 'completed');
    assert.ok(['pending', 'running'].includes(events[0].data.status), JSON.stringify(events[0]));
    const text = events.filter((e) => e.event === 'log').map((e) => e.data.text).join('');
    assert.match(text, /training random_forest on/);
    assert.equal(text, await client.getJobLogs(job.job_id));
    const epochs = events.filter((e) => e.event === 'progress').flatMap((e) => e.data.history);
    assert.deepEqual(epochs.map((h) => h.epoch), [1]);
    assert.equal(new Set(events.map((e) => e.id)).size, events.length);
    for (let cut = 0; cut < events.length; cut++) {
      const rest = [];
      for await (const event of client.events(job.job_id, { lastEventId: events[cut].id })) rest.push(event);
      // the job has ended: the events after the cut, but for progress snapshots read once
      const logs = rest.filter((e) => e.event === 'log').map((e) => e.data.text).join('');
      const before = events.slice(0, cut + 1).filter((e) => e.event === 'log').map((e) => e.data.text).join('');
      assert.equal(before + logs, text);
      assert.equal(rest.length === 0, cut === events.length - 1);
      if (rest.length) assert.equal(rest.at(-1).data.status, 'completed');
    }
  });

  test('a retried POST whose answer was lost creates one job (Idempotency-Key)', async () => {
    const keys = [];
    let calls = 0;
    const lossy = async (url, init) => {
      calls += 1;
      keys.push(init.headers['Idempotency-Key']);
      const response = await fetch(url, init);
      if (calls === 1) {
        await response.text();
        throw new TypeError('fetch failed: the connection was reset'); // the answer is lost
      }
      return response;
    };
    const before = (await client.listJobs({ limit: 1 })).total;
    const flaky = new AIJobClient(system.url, { fetch: lossy, backoffMs: 10 });
    const job = await flaky.submitTrainingJob('svm', '/data/tabular_data.csv', {});
    assert.equal(calls, 2);
    assert.equal(keys[0], keys[1]);
    assert.equal((await client.listJobs({ limit: 1 })).total, before + 1);
    assert.equal((await client.getJobStatus(job.job_id)).job_id, job.job_id);
  });

  test('a retried DELETE that already landed reports the cancel', async () => {
    const job = await client.submitTrainingJob('inception', '/data/cifar10', {});
    let calls = 0;
    const lossy = async (url, init) => {
      const response = await fetch(url, init);
      calls += 1;
      if (init.method === 'DELETE' && calls === 1) {
        await response.text();
        throw new TypeError('fetch failed');
      }
      return response;
    };
    const flaky = new AIJobClient(system.url, { fetch: lossy, backoffMs: 10 });
    const cancelled = await flaky.cancelJob(job.job_id);
    assert.equal(cancelled.status, 'cancelled');
  });

  test('iterJobs pages through every job once', async () => {
    const { total } = await client.listJobs({ limit: 1 });
    const seen = [];
    for await (const job of client.iterJobs({ pageSize: 2 })) seen.push(job.job_id);
    assert.equal(seen.length, total);
    assert.equal(new Set(seen).size, total);
    const cancelled = [];
    for await (const job of client.iterJobs({ status: 'cancelled', pageSize: 1 })) cancelled.push(job);
    assert.ok(cancelled.length >= 2 && cancelled.every((j) => j.status === 'cancelled'));
  });
});

test('a server that is down: connection error after the retries', async () => {
  const port = await freePort();
  let calls = 0;
  const counting = (url, init) => {
    calls += 1;
    return fetch(url, init);
  };
  const client = new AIJobClient(`http://127.0.0.1:${port}`, { retries: 2, backoffMs: 10, fetch: counting });
  await assert.rejects(client.getJobStatus('job_x'), (err) => {
    assert.ok(err instanceof AIJobsConnectionError);
    assert.ok(err instanceof AIJobsError);
    assert.equal(err.statusCode, null);
    assert.match(err.detail, /cannot reach the aijobs API/);
    return true;
  });
  assert.equal(calls, 3);
});

test('an API key is sent as a bearer credential, unless headers bring their own', async () => {
  const seen = [];
  const recording = async (url, init) => {
    seen.push(init.headers);
    return new Response(JSON.stringify({ status: 'healthy' }), {
      headers: { 'Content-Type': 'application/json' },
    });
  };
  await new AIJobClient('http://127.0.0.1:9', { apiKey: 'aij_k', fetch: recording }).health();
  const own = { headers: { authorization: 'Bearer other' }, apiKey: 'aij_k', fetch: recording };
  await new AIJobClient('http://127.0.0.1:9', own).health();
  assert.equal(seen[0].Authorization, 'Bearer aij_k');
  assert.equal(seen[1].Authorization, undefined);
  assert.equal(seen[1].authorization, 'Bearer other');
});

test('a wait is timed by a monotonic clock: a step of the wall clock does not end it', async () => {
  const answers = ['pending', 'running', 'completed'];
  const stub = async () =>
    new Response(JSON.stringify({ job_id: 'job_x', status: answers.shift() ?? 'completed' }), {
      headers: { 'Content-Type': 'application/json' },
    });
  const wallClock = Date.now;
  let stepped = wallClock();
  Date.now = () => (stepped += 3_600_000); // an hour forward at every look
  try {
    const client = new AIJobClient('http://127.0.0.1:9', { fetch: stub });
    const done = await client.waitForCompletion('job_x', 5000, { pollSeconds: 0 });
    assert.equal(done.status, 'completed');
  } finally {
    Date.now = wallClock;
  }
});
