// The Tasks panel: label probabilities from the model, through the worker, in the page.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadModel, session } from './helpers.mjs';

let s;

before(async () => {
  s = await session();
});

after(() => s?.close());

test('classify and sentiment show normalised label probabilities', async () => {
  const { ui } = s;
  await loadModel(ui, '/models/gemma-3-270m-q4_k_m.gguf');
  await ui.page.getByText('Tasks', { exact: true }).click();
  await ui.page.getByRole('textbox', { name: 'Task text' }).fill('I absolutely love this phone. Best purchase I have made all year!');
  await ui.page.getByRole('button', { name: 'Sentiment' }).click();
  const result = ui.page.getByRole('status', { name: 'Task result' });
  await ui.page.waitForFunction(() => document.querySelectorAll('#task-result li').length === 3, null, { timeout: 60_000 });
  const rows = await result.locator('li').allInnerTexts();
  console.log(rows);
  const parsed = rows.map((r) => {
    const [label, pct] = r.split(/\s+/).filter(Boolean);
    return { label, p: parseFloat(pct) };
  });
  assert.deepEqual(parsed.map((r) => r.label), ['Positive', 'Negative', 'Neutral']);
  const total = parsed.reduce((a, r) => a + r.p, 0);
  assert.ok(Math.abs(total - 100) < 0.5, `percentages sum to ${total}`);
  assert.equal(parsed.reduce((a, b) => (b.p > a.p ? b : a)).label, 'Positive');

  // Classify with the panel's default few-shot examples and labels.
  await ui.page.getByRole('textbox', { name: 'Task text' }).fill('Tennis champion wins her fifth title at Wimbledon');
  await ui.page.getByRole('button', { name: 'Classify' }).click();
  await ui.page.waitForFunction(() => document.querySelectorAll('#task-result li').length === 4, null, { timeout: 60_000 });
  const topics = (await result.locator('li').allInnerTexts()).map((r) => r.split(/\s+/).filter(Boolean));
  console.log(topics);
  assert.deepEqual(topics.map((t) => t[0]), ['sports', 'politics', 'science', 'business']);
  const sum = topics.reduce((a, t) => a + parseFloat(t[1]), 0);
  assert.ok(Math.abs(sum - 100) < 0.5, `percentages sum to ${sum}`);

  // The client API behind the panel.
  const api = await ui.page.evaluate(async () => {
    const { CandlelitEngine } = await import('/pkg/client.js');
    const e = new CandlelitEngine({ threads: 1 });
    await e.load({ url: '/models/gemma-3-270m-q4_k_m.gguf' });
    const labels = ['sports', 'politics', 'science', 'business'];
    const examples = [
      ['Striker scores twice as United win the derby', 'sports'],
      ['Parliament passes the new budget after a long debate', 'politics'],
      ['Astronomers find water vapour on a distant exoplanet', 'science'],
      ['Shares of the carmaker jump after record quarterly profits', 'business'],
    ];
    const r = await e.classify('Tennis champion wins her fifth title at Wimbledon', labels, { examples, calibrate: true });
    const sc = await e.score({ prompt: 'The capital of France is' }, [' Paris', ' London']);
    e.terminate();
    return { r, sc };
  });
  console.log(JSON.stringify(api));
  assert.equal(api.r.map((x) => x.label).join(), 'sports,politics,science,business');
  assert.equal(api.r.reduce((a, b) => (b.probability > a.probability ? b : a)).label, 'sports');
  assert.ok(api.sc[0].logprob > api.sc[1].logprob);
});
