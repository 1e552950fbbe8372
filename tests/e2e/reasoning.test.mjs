// Reasoning models in the browser: a reply's <think>…</think> streams apart from its answer
// (`reasoning_content`, folded above the reply on the page), and the template's thinking
// switch (`chat_template_kwargs`, WebLLM's `extra_body`) reaches the prompt. No test model
// thinks on its own: a regex makes SmolLM2 write a thought first, and SmolLM2 loaded with
// Qwen3's chat template (the same ChatML tokens) has Qwen3's `enable_thinking` switch.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ask, loadModel, session, SMOLLM2 } from './helpers.mjs';

const QWEN3_TEMPLATE = '/models/templates/Qwen-Qwen3-0.6B.jinja';
const THINK_FIRST = '<think>[A-Za-z ,]{10,60}</think>\\n\\n[A-Z][a-z]+( [a-z]+){0,6}\\.';

let s;

before(async () => {
  s = await session();
});

after(() => s?.close());

test('the thinking streams as reasoning_content, apart from the answer', async () => {
  const r = await s.ui.page.evaluate(async ([url, pattern]) => {
    const { CandlelitEngine } = await import('/pkg/client.js');
    const e = new CandlelitEngine({ threads: 1 });
    await e.load({ url });
    const params = {
      messages: [{ role: 'user', content: 'What is the capital of France?' }],
      temperature: 0,
      max_tokens: 60,
      response_format: { type: 'regex', pattern },
    };
    const deltas = [];
    for await (const c of await e.chat.completions.create({ ...params, stream: true })) deltas.push(c.choices[0].delta);
    const whole = await e.chat.completions.create(params);
    const inline = await e.chat.completions.create({ ...params, reasoning_format: 'none' });
    let bad = null;
    try {
      await e.chat.completions.create({ ...params, chat_template_kwargs: { messages: [] } });
    } catch (err) {
      bad = `${err.name}: ${err.message}`;
    }
    e.terminate();
    return { deltas, whole: whole.choices[0].message, inline: inline.choices[0].message.content, bad };
  }, [SMOLLM2, THINK_FIRST]);
  console.log(JSON.stringify({ ...r, deltas: r.deltas.length }));
  const thinking = r.deltas.filter((d) => d.reasoning_content);
  const answer = r.deltas.filter((d) => d.content);
  assert.ok(thinking.length > 2, 'the thinking streams token by token');
  // All of the thinking comes before any of the answer, and neither holds a tag.
  assert.ok(r.deltas.lastIndexOf(thinking.at(-1)) < r.deltas.indexOf(answer[0]));
  const reasoning = thinking.map((d) => d.reasoning_content).join('');
  const content = answer.map((d) => d.content).join('');
  assert.ok(!/think>/.test(reasoning + content), reasoning + content);
  assert.match(content, /^[A-Z][a-z]+( [a-z]+){0,6}\.$/);
  assert.deepEqual([r.whole.reasoning_content, r.whole.content], [reasoning, content]);
  assert.equal(r.inline, `<think>${reasoning}</think>\n\n${content}`);
  assert.match(r.bad, /chat_template_kwargs may not set `messages`/);
});

test("a template's thinking switch reaches the prompt; a bad template is refused at load", async () => {
  const r = await s.ui.page.evaluate(async ([url, templateUrl]) => {
    const { CandlelitEngine } = await import('/pkg/client.js');
    const e = new CandlelitEngine({ threads: 1 });
    const own = await e.load({ url });
    const chatTemplate = await (await fetch(templateUrl)).text();
    const qwen = await e.load({ url }, { chatTemplate });
    const messages = [{ role: 'user', content: 'What is the capital of France?' }];
    const promptTokens = async (extra) => (await e.chat.completions.create({ messages, temperature: 0, max_tokens: 1, ...extra })).usage.prompt_tokens;
    const tokens = {
      default: await promptTokens({}),
      on: await promptTokens({ chat_template_kwargs: { enable_thinking: true } }),
      off: await promptTokens({ chat_template_kwargs: { enable_thinking: false } }),
      webllm: await promptTokens({ extra_body: { enable_thinking: false } }),
    };
    const answer = (await e.chat.completions.create({ messages, temperature: 0, max_tokens: 30, chat_template_kwargs: { enable_thinking: false } })).choices[0].message;
    let refused = null;
    try {
      await e.load({ url }, { chatTemplate: '{% if messages %}never closed' });
    } catch (err) {
      refused = `${err.name}: ${err.message}`;
    }
    const after = await e.load({ url });
    e.terminate();
    return { own: own.template_switches, qwen: qwen.template_switches, tokens, answer, refused, after: after.template_switches };
  }, [SMOLLM2, QWEN3_TEMPLATE]);
  console.log(JSON.stringify(r));
  assert.deepEqual(r.own, []);
  assert.deepEqual(r.qwen, ['enable_thinking']);
  // Qwen3's template writes an empty thought into the prompt when thinking is off.
  assert.equal(r.tokens.on, r.tokens.default);
  assert.ok(r.tokens.off >= r.tokens.on + 4, JSON.stringify(r.tokens));
  assert.equal(r.tokens.webllm, r.tokens.off);
  assert.match(r.answer.content, /Paris/);
  assert.match(r.refused, /^Template: chatTemplate: /);
  assert.deepEqual(r.after, []);
});

test('the page folds the thinking above the reply and offers the switch where the template has it', async () => {
  const { ui } = s;
  await loadModel(ui, SMOLLM2);
  // (In the Settings panel, which is folded: its `hidden` says whether it is offered.)
  const offered = () => ui.page.locator('#thinking-row').evaluate((row) => !row.hidden);
  assert.equal(await offered(), false, 'SmolLM2 has no thinking switch');
  // The page's requests, seen (and made to think first) on their way to the engine.
  await ui.page.evaluate((pattern) => {
    const e = globalThis.candlelitEngine;
    const create = e.chat.completions.create;
    globalThis.__requests = [];
    e.chat.completions.create = (p) => {
      globalThis.__requests.push(p);
      return create({ ...p, ...(globalThis.__think ? { response_format: { type: 'regex', pattern } } : {}) });
    };
    globalThis.__think = true;
  }, THINK_FIRST);
  const reply = await ask(ui, 'What is the capital of France?');
  const bubble = ui.page.locator('.msg.assistant').last();
  const thought = await bubble.locator('.thinking-text').textContent();
  console.log(JSON.stringify({ thought, reply }));
  assert.ok(thought.length >= 10 && !/think>/.test(thought + reply), thought + reply);
  assert.match(reply, /^[A-Z][a-z]+( [a-z]+){0,6}\.$/);
  assert.equal(await bubble.locator('details.thinking').getAttribute('open'), null, 'folded once the answer came');
  // The next question sends the answer back without the thinking.
  await ui.page.evaluate(() => (globalThis.__think = false));
  await ask(ui, 'And of Spain?');
  const sent = await ui.page.evaluate(() => globalThis.__requests.at(-1).messages);
  assert.deepEqual(sent.find((m) => m.role === 'assistant'), { role: 'assistant', content: reply });
  // Kept with the conversation across a reload.
  await ui.page.reload();
  await ui.page.locator('.msg.assistant').nth(1).waitFor();
  assert.equal(await ui.page.locator('.msg.assistant .thinking-text').first().textContent(), thought);
  assert.equal(await ui.page.locator('.msg.assistant details.thinking:not([hidden])').count(), 1);

  // With Qwen3's template the switch shows, and unticked it turns the thinking off.
  const template = await ui.page.evaluate(async (u) => (await fetch(u)).text(), QWEN3_TEMPLATE);
  await ui.page.evaluate((chatTemplate) => {
    const e = globalThis.candlelitEngine;
    const load = e.load.bind(e);
    e.load = (source, options) => load(source, { ...options, chatTemplate });
    const create = e.chat.completions.create;
    globalThis.__requests = [];
    e.chat.completions.create = (p) => {
      globalThis.__requests.push(p);
      return create(p);
    };
  }, template);
  await loadModel(ui, SMOLLM2);
  assert.equal(await offered(), true);
  await ui.page.getByText('Settings', { exact: true }).click();
  await ui.page.getByLabel(/Think before answering/).uncheck();
  await ask(ui, 'Name a color.');
  await ui.page.getByLabel(/Think before answering/).check();
  await ask(ui, 'Name another.');
  const kwargs = await ui.page.evaluate(() => globalThis.__requests.map((p) => p.chat_template_kwargs));
  assert.deepEqual(kwargs, [{ enable_thinking: false }, { enable_thinking: true }]);
});
