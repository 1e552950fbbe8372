// Constrained decoding, text recipes and sentence embeddings in the browser: through the
// page's Tasks and Semantic search panels and through the client API.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadModel, session, SMOLLM2 } from './helpers.mjs';

let s;

before(async () => {
  s = await session();
});

after(() => s?.close());

test('extract and summarize in the Tasks panel give the asked shape', async () => {
  const { ui } = s;
  await loadModel(ui, SMOLLM2);
  await ui.page.getByText('Tasks', { exact: true }).click();
  await ui.page.getByRole('textbox', { name: 'Task text' }).fill('Maria Lopez, 34, lives in Madrid and works as a nurse.');
  await ui.page.getByRole('button', { name: 'Extract' }).click();
  const output = ui.page.getByLabel('Task output');
  await ui.page.waitForFunction(() => document.querySelector('#task-output').textContent.length > 0, null, { timeout: 120_000 });
  const value = JSON.parse(await output.textContent());
  console.log('extract:', value, await ui.page.locator('#task-meta').textContent());
  assert.deepEqual(Object.keys(value).sort(), ['age', 'city', 'name']);
  assert.equal(typeof value.name, 'string');
  assert.ok(Number.isInteger(value.age));
  assert.equal(value.city, 'Madrid');
  assert.match(await ui.page.locator('#task-meta').textContent(), /confidence .* \(mean token probability \d+%\)/);

  await ui.page.getByRole('textbox', { name: 'Task text' }).fill(
    'The city council met on Monday to discuss the new bus lanes. Shop owners worried about deliveries, cyclists asked for protected lanes, and the mayor promised a trial on two streets next spring.',
  );
  await ui.page.getByRole('button', { name: 'Summarize' }).click();
  await ui.page.waitForFunction(() => document.querySelector('#task-output').textContent.startsWith('- '), null, { timeout: 120_000 });
  const lines = (await output.textContent()).split('\n');
  console.log('summary:', lines);
  assert.equal(lines.length, 3);
  assert.ok(lines.every((l) => l.startsWith('- ') && l.length > 2));
});

test('response_format constrains chat completions; recipes through the client API', async () => {
  const r = await s.ui.page.evaluate(async (url) => {
    const { CandlelitEngine } = await import('/pkg/client.js');
    const e = new CandlelitEngine({ threads: 1 });
    await e.load({ url });
    const schema = {
      type: 'object',
      properties: { answer: { type: 'string', maxLength: 40 }, confident: { type: 'boolean' } },
      required: ['answer', 'confident'],
      additionalProperties: false,
    };
    const json = await e.chat.completions.create({
      messages: [{ role: 'user', content: 'What is the capital of France? Reply in JSON.' }],
      temperature: 0,
      max_tokens: 60,
      response_format: { type: 'json_schema', json_schema: { name: 'answer', schema } },
    });
    const chunks = [];
    for await (const c of await e.chat.completions.create({
      messages: [{ role: 'user', content: 'Is water wet? Answer yes or no.' }],
      temperature: 0,
      stream: true,
      response_format: { type: 'choices', choices: ['yes', 'no'] },
    })) chunks.push(c.choices[0].delta.content ?? '');
    const date = await e.chat.completions.create({
      prompt: 'The first moon landing was on',
      temperature: 0,
      max_tokens: 20,
      response_format: { type: 'regex', pattern: ' [0-9]{4}-[0-9]{2}-[0-9]{2}' },
    });
    let badSchema = null;
    try {
      await e.chat.completions.create({ prompt: 'x', response_format: { type: 'regex', pattern: '(' } });
    } catch (err) {
      badSchema = `${err.name}: ${err.message}`;
    }
    const translated = await e.translate('Good morning, my friend.', { to: 'French' });
    const persona = await e.edit('i has went to the store yesterday', 'fix spelling and grammar', { persona: 'a careful copy editor' });
    e.terminate();
    return { json: json.choices[0].message.content, finish: json.choices[0].finish_reason, choice: chunks.join(''), date: date.choices[0].message.content, badSchema, translated, persona };
  }, SMOLLM2);
  console.log(JSON.stringify(r, null, 1));
  const v = JSON.parse(r.json);
  assert.deepEqual(Object.keys(v).sort(), ['answer', 'confident']);
  assert.equal(typeof v.confident, 'boolean');
  assert.equal(r.finish, 'stop');
  assert.ok(['yes', 'no'].includes(r.choice), r.choice);
  assert.match(r.date, /^ \d{4}-\d{2}-\d{2}$/);
  assert.match(r.badSchema, /^Constraint: /);
  assert.ok(r.translated.text.length > 0 && r.translated.confidence > 0 && r.translated.confidence <= 1);
  assert.equal(r.translated.finish_reason, 'stop');
  assert.ok(r.persona.text.length > 0);
});

test('a recipe stops at its next step when its signal aborts (API and the Tasks panel\'s Stop), and the engine carries on', async () => {
  const { ui } = s;
  const text =
    'The city council met on Monday to discuss the new bus lanes. Shop owners worried about deliveries, cyclists asked for protected lanes, and the mayor promised a trial on two streets next spring.';
  const r = await ui.page.evaluate(async (text) => {
    const e = window.candlelitEngine;
    const opts = { to: 'French', max_tokens: 96, sampling: { temperature: 0.8, seed: 7 } };
    let t0 = performance.now();
    const whole = await e.translate(text, opts);
    const wholeMs = performance.now() - t0;
    const failure = (p) => p.then(() => null, (err) => err.name);
    // Aborted a quarter of the way into what the whole run took.
    const aborter = new AbortController();
    t0 = performance.now();
    const stopped = failure(e.translate(text, { ...opts, signal: aborter.signal }));
    setTimeout(() => aborter.abort(), wholeMs / 4);
    const error = await stopped;
    const stoppedMs = performance.now() - t0;
    const scoring = new AbortController();
    const scored = failure(e.sentiment(text, { calibrate: true, signal: scoring.signal }));
    scoring.abort();
    const again = await e.translate(text, opts);
    return { whole, wholeMs, error, stoppedMs, scoreError: await scored, early: await failure(e.extract(text, { type: 'object' }, { signal: AbortSignal.abort() })), again };
  }, text);
  console.log(`whole translation: ${r.whole.tokens} tokens in ${r.wholeMs.toFixed(0)} ms; aborted at a quarter: ${r.error} after ${r.stoppedMs.toFixed(0)} ms (${(r.stoppedMs / r.wholeMs).toFixed(2)} of the whole)`);
  assert.equal(r.error, 'AbortError');
  assert.equal(r.scoreError, 'AbortError');
  assert.equal(r.early, 'AbortError');
  assert.ok(r.whole.tokens > 20, `${r.whole.tokens} tokens`);
  assert.ok(r.stoppedMs < 0.75 * r.wholeMs, `the cancelled run took ${r.stoppedMs} ms, the whole one ${r.wholeMs} ms`);
  // The same seed after a cancelled run: the engine was left as it should be.
  assert.equal(r.again.text, r.whole.text);

  await ui.page.evaluate(() => {
    document.getElementById('tasks').open = true;
  });
  await ui.page.getByRole('textbox', { name: 'Task text' }).fill(text);
  await ui.page.getByRole('button', { name: 'Translate' }).click();
  await ui.page.waitForFunction(() => document.getElementById('task-meta').textContent === 'Working…');
  await ui.page.getByRole('button', { name: 'Stop task' }).click();
  await ui.page.waitForFunction(() => document.getElementById('task-meta').textContent !== 'Working…', null, { timeout: 60_000 });
  assert.equal(await ui.page.locator('#task-meta').textContent(), 'Stopped.');
  assert.equal(await ui.page.locator('#error').textContent(), '');
  assert.ok(await ui.page.getByRole('button', { name: 'Stop task' }).isDisabled());
});

test('completions.create: OpenAI\'s text completions continue a raw prompt, whole or streamed', async () => {
  const r = await s.ui.page.evaluate(async () => {
    const e = window.candlelitEngine;
    const params = { prompt: 'The capital of France is', temperature: 0, max_tokens: 12 };
    const whole = await e.completions.create(params);
    let streamed = '';
    const objects = new Set();
    let last;
    for await (const c of await e.completions.create({ ...params, stream: true })) {
      streamed += c.choices[0].text;
      objects.add(c.object);
      last = c;
    }
    const chat = await e.chat.completions.create(params);
    let refused = null;
    try {
      await e.completions.create({ messages: [{ role: 'user', content: 'Hi' }] });
    } catch (err) {
      refused = err.message;
    }
    return { whole, streamed, objects: [...objects], lastFinish: last.choices[0].finish_reason, lastUsage: last.usage, chat: chat.choices[0].message.content, refused };
  });
  console.log(JSON.stringify(r.whole));
  assert.equal(r.whole.object, 'text_completion');
  assert.match(r.whole.id, /^cmpl-/);
  assert.match(r.whole.choices[0].text, /Paris/);
  assert.equal(r.whole.choices[0].text, r.chat);
  assert.equal(r.streamed, r.whole.choices[0].text);
  assert.deepEqual(r.objects, ['text_completion']);
  assert.equal(r.lastFinish, r.whole.choices[0].finish_reason);
  assert.equal(r.lastUsage.completion_tokens, r.whole.usage.completion_tokens);
  assert.match(r.refused, /prompt/);
});

test('semantic search ranks by meaning with MiniLM embeddings in the browser', async () => {
  const { ui } = s;
  await ui.page.getByText('Semantic search', { exact: true }).click();
  await ui.page.getByRole('button', { name: 'Search' }).click();
  await ui.page.waitForFunction(() => document.querySelectorAll('#search-results li').length === 5, null, { timeout: 120_000 });
  const rows = await ui.page.locator('#search-results li').allInnerTexts();
  console.log(rows);
  const scores = rows.map((r) => parseFloat(r));
  assert.deepEqual([...scores].sort((a, b) => b - a), scores, 'sorted by similarity');
  // "I forgot how to sign in": the two login passages come first.
  assert.ok(rows.slice(0, 2).every((r) => /password|login credentials/.test(r)), rows.join('\n'));

  // The OpenAI-shaped API; a second load comes from browser storage.
  const api = await ui.page.evaluate(async () => {
    const { CandlelitEngine } = await import('/pkg/client.js');
    const e = new CandlelitEngine({ threads: 1 });
    const info = await e.loadEmbedder('/models/minilm/');
    const r = await e.embeddings.create({ input: ['A man is eating food.', 'A man is eating a piece of bread.'] });
    e.terminate();
    return { info, r };
  });
  assert.equal(api.info.fromStorage, true);
  assert.equal(api.r.object, 'list');
  assert.equal(api.r.data.length, 2);
  assert.equal(api.r.data[0].embedding.length, 384);
  assert.ok(api.r.usage.prompt_tokens > 4);
  // Same vectors as sentence-transformers (fixture): cosine ≥ 0.999.
  const fx = JSON.parse(await (await import('node:fs/promises')).readFile(new URL('../fixtures/minilm.embeddings.json', import.meta.url)));
  for (const [i, text] of ['A man is eating food.', 'A man is eating a piece of bread.'].entries()) {
    const want = fx.cases.find((c) => c.text === text).embedding;
    const got = api.r.data[i].embedding;
    const cos = got.reduce((s, x, j) => s + x * want[j], 0);
    console.log(`browser vs sentence-transformers cosine for "${text}": ${cos.toFixed(6)}`);
    assert.ok(cos >= 0.999, `cosine ${cos}`);
  }
});
