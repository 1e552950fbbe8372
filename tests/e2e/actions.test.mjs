// The page's message actions: Copy puts a reply's Markdown on the clipboard, Regenerate
// replaces the last reply (its question's tokens come from the KV cache), Edit takes the last
// question back into the composer; all of it survives a reload.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ask, loadModel, session } from './helpers.mjs';

let s;
let ui;

before(async () => {
  s = await session();
  ({ ui } = s);
  await s.browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: s.server.base });
  await loadModel(ui);
});

after(() => s?.close());

const saved = () => ui.page.evaluate(() => JSON.parse(localStorage.getItem('candlelit.state.v1')).messages.map((m) => [m.role, m.content]));
const button = (name) => ui.page.getByRole('button', { name, exact: true });

test('Regenerate replaces the last reply, reusing the cached prompt', async () => {
  const first = await ask(ui, 'What is the capital of France?');
  assert.match(first, /Paris/);
  await button('Regenerate the last reply').click();
  await ui.page.waitForFunction(() => document.getElementById('stop').disabled && document.querySelectorAll('.msg.assistant .meta')[0]?.textContent.includes('tok/s'), null, { timeout: 120_000 });
  const replies = await ui.page.locator('.msg.assistant .body').allInnerTexts();
  assert.equal(replies.length, 1, 'the old reply is replaced, not kept');
  assert.equal(replies[0], first, 'greedy decoding gives the same reply again');
  const meta = await ui.page.locator('.msg.assistant .meta').innerText();
  console.log(`regenerated: ${meta}`);
  const [, prompt, prefilled, cached] = /prompt (\d+) tokens \((\d+) prefilled, (\d+) from cache\)/.exec(meta).map(Number);
  assert.ok(prefilled <= 1 && cached === prompt - prefilled, meta);
  assert.deepEqual(await saved(), [['user', 'What is the capital of France?'], ['assistant', first]]);
  // Only the last reply can be regenerated, only the last question edited.
  assert.equal(await button('Regenerate the last reply').count(), 1);
  assert.equal(await button('Edit the last message').count(), 1);
});

test('Copy puts the reply as written (Markdown) on the clipboard', async () => {
  await ask(ui, 'Write the word "bold" in bold Markdown.');
  const raw = (await saved()).at(-1)[1];
  await button('Copy this reply').last().click();
  await ui.page.locator('.msg.assistant .actions button', { hasText: 'Copied' }).waitFor();
  assert.equal(await ui.page.evaluate(() => navigator.clipboard.readText()), raw);
  // Two exchanges now: only the last ones carry Regenerate and Edit.
  assert.equal(await button('Copy this reply').count(), 2);
  assert.equal(await button('Regenerate the last reply').count(), 1);
  assert.equal(await button('Edit the last message').count(), 1);
});

test('Edit takes the last question back; the changed question gets its own answer', async () => {
  await button('Edit the last message').click();
  assert.equal(await ui.message.inputValue(), 'Write the word "bold" in bold Markdown.');
  assert.deepEqual(await saved(), [['user', 'What is the capital of France?'], ['assistant', (await saved())[1][1]]]);
  assert.equal(await ui.page.locator('.msg').count(), 2);
  const reply = await ask(ui, 'What is the capital of Italy?');
  assert.match(reply, /Rome/);
  // After a reload the conversation and its actions are back.
  await ui.page.reload();
  await ui.page.locator('.msg.assistant').nth(1).waitFor();
  assert.equal(await button('Regenerate the last reply').count(), 1);
  assert.deepEqual((await saved()).map(([role]) => role), ['user', 'assistant', 'user', 'assistant']);
});
