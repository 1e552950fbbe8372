// Function calling through chat.completions.create (tools, tool_choice, tool_calls, role
// 'tool'): the message plumbing checked directly, then SmolLM2 in Chromium calling functions
// (required, named, streamed), answering from a function's result, and answering in text.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mightBeCall, parseToolCall, parseToolCalls, planTools } from '../../pkg/tools.js';
import { SMOLLM2, session } from './helpers.mjs';

const weather = { type: 'function', function: { name: 'get_weather', description: 'The current weather in a city.', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } };
const time = { type: 'function', function: { name: 'get_time', description: 'The current time in a time zone.', parameters: { type: 'object', properties: { timezone: { type: 'string' } }, required: ['timezone'] } } };

test('calls and results become turns every template renders; the required call is a schema', () => {
  const plan = planTools(
    [
      { role: 'system', content: 'You are helpful.' },
      { role: 'user', content: 'Weather and time in Paris?' },
      { role: 'assistant', content: null, tool_calls: [
        { id: 'a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
        { id: 'b', type: 'function', function: { name: 'get_time', arguments: '{"timezone":"Europe/Paris"}' } },
      ] },
      { role: 'tool', tool_call_id: 'a', content: '{"celsius":18}' },
      { role: 'tool', tool_call_id: 'b', content: '14:05' },
    ],
    [weather, time],
    'required',
  );
  assert.deepEqual(plan.messages.map((m) => m.role), ['system', 'user', 'assistant', 'user'], 'turns alternate (Gemma requires it)');
  assert.match(plan.messages[0].content, /^You are helpful\.\n\nAnswer by calling one of these functions[\s\S]*get_weather: The current weather/);
  assert.equal(plan.messages[2].content, '{"name":"get_weather","arguments":{"city":"Paris"}}\n{"name":"get_time","arguments":{"timezone":"Europe/Paris"}}');
  assert.equal(plan.messages[3].content, 'The function get_weather returned: {"celsius":18}\nThe function get_time returned: 14:05\nAnswer my question "Weather and time in Paris?" in a sentence, using this result.');
  assert.deepEqual(plan.constraint.schema.anyOf.map((s) => s.properties.name.const), ['get_weather', 'get_time']);
  assert.equal(plan.constraint.schema.anyOf[0].properties.arguments.additionalProperties, false, 'arguments the schema does not name are left out');
  assert.equal(planTools([{ role: 'user', content: 'hi' }], [weather], 'none').constraint, undefined);
  assert.equal(planTools([{ role: 'user', content: 'hi' }], [weather], 'auto').messages[0].role, 'system');
  assert.throws(() => planTools([], [weather], { type: 'function', function: { name: 'nope' } }), /naming one of the tools/);
  assert.throws(() => planTools([], [{ type: 'function', function: { name: 'bad name!' } }]), /a function needs a name/);

  const allowed = plan.allowed;
  assert.equal(parseToolCall(' {"name":"get_time","arguments":{"timezone":"UTC"}} ', allowed)?.function.arguments, '{"timezone":"UTC"}');
  assert.equal(parseToolCall('<tool_call>\n{"name":"get_weather","arguments":{"city":"Oslo"}}\n</tool_call>', allowed)?.function.name, 'get_weather');
  assert.equal(parseToolCall('```json\n{"name":"get_weather","arguments":{"city":"Oslo"}}\n```', allowed)?.function.name, 'get_weather');
  assert.equal(parseToolCall('{"name":"launch_rockets","arguments":{}}', allowed), null, 'only offered functions');
  assert.equal(parseToolCall('The weather is fine.', allowed), null);
  assert.equal(parseToolCall('{"name":"get_weather","arguments":"Oslo"}', allowed), null);
  assert.ok(mightBeCall('  {"na') && mightBeCall('<tool') && mightBeCall('```py') === false && mightBeCall('The') === false);
});

test("a template with its own tool format renders the turns itself; a required call is the model's own format", () => {
  const history = [
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
    { role: 'tool', tool_call_id: 'a', content: '{"celsius":18}' },
  ];
  const hermes = planTools(history, [weather, time], 'required', 'hermes');
  // The turns go to the template as they are; only the call's arguments are read as JSON.
  assert.deepEqual(hermes.messages[2], history[2]);
  assert.deepEqual(hermes.messages[1].tool_calls[0].function.arguments, { city: 'Paris' });
  assert.equal(hermes.messages[1].content, '');
  assert.equal(hermes.messages.length, 3);
  assert.deepEqual(hermes.tools, [weather, time], 'the template gets the functions as declared');
  assert.equal(hermes.constraint.type, 'lark');
  assert.match(hermes.constraint.grammar, /^start: "<tool_call>\\n" call "\\n<\/tool_call>"\ncall: %json \{"anyOf":\[\{"type":"object","properties":\{"name":\{"const":"get_weather"\},"arguments":/);
  const llama = planTools(history, [weather], 'required', 'llama3');
  assert.deepEqual(Object.keys(llama.constraint.schema.anyOf[0].properties), ['name', 'parameters']);
  assert.equal(planTools(history, [weather], 'none', 'hermes').tools, undefined, "'none' offers no functions");
  // Qwen's parallel calls: several blocks in one reply.
  const two = parseToolCalls('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"timezone": "CET"}}\n</tool_call>', hermes.allowed);
  assert.deepEqual(two?.map((c) => c.function.name), ['get_weather', 'get_time']);
  assert.equal(parseToolCalls('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call> and then?', hermes.allowed), null);
  assert.equal(parseToolCall('{"name": "get_weather", "parameters": {"city": "Oslo"}}', hermes.allowed)?.function.arguments, '{"city":"Oslo"}');
});

let s;
let page;

before(async () => {
  s = await session();
  page = s.ui.page;
  await page.evaluate(async (url) => {
    const { CandlelitEngine } = await import('/pkg/client.js');
    window.engine = new CandlelitEngine();
    await window.engine.load({ url });
  }, s.server.base + SMOLLM2);
});

after(() => s?.close());

const create = (params) =>
  page.evaluate(async (p) => {
    try {
      if (!p.stream) return { ok: await window.engine.chat.completions.create(p) };
      const chunks = [];
      for await (const c of await window.engine.chat.completions.create(p)) chunks.push(c);
      return { ok: chunks };
    } catch (e) {
      return { error: `${e.name}: ${e.message}` };
    }
  }, params);

const ask = { role: 'user', content: "What's the weather like in Paris today?" };

test('a required call is a well-formed call to an offered function', async () => {
  const r = await create({ messages: [ask], tools: [weather, time], tool_choice: 'required', temperature: 0 });
  assert.ok(r.ok, JSON.stringify(r));
  const { message, finish_reason } = r.ok.choices[0];
  console.log(`required: ${JSON.stringify(message)}`);
  assert.equal(finish_reason, 'tool_calls');
  assert.equal(message.content, null);
  assert.equal(message.tool_calls.length, 1);
  const [call] = message.tool_calls;
  assert.match(call.id, /^call_/);
  assert.equal(call.function.name, 'get_weather');
  const args = JSON.parse(call.function.arguments);
  assert.deepEqual(Object.keys(args), ['city']);
  assert.match(args.city, /Paris/);

  // Naming the function: the model must call that one, with its arguments.
  const named = await create({ messages: [ask], tools: [weather, time], tool_choice: { type: 'function', function: { name: 'get_time' } }, temperature: 0 });
  const nc = named.ok.choices[0].message.tool_calls[0];
  console.log(`named: ${JSON.stringify(nc.function)}`);
  assert.equal(nc.function.name, 'get_time');
  assert.equal(typeof JSON.parse(nc.function.arguments).timezone, 'string');
});

test('streamed, a call comes as one tool_calls delta, with no text before it', async () => {
  const r = await create({ messages: [ask], tools: [weather], tool_choice: 'required', temperature: 0, stream: true });
  assert.ok(r.ok, JSON.stringify(r));
  const chunks = r.ok;
  assert.ok(chunks.every((c) => !c.choices[0].delta.content), 'no call text leaks out as content');
  const withCall = chunks.filter((c) => c.choices[0].delta.tool_calls);
  assert.equal(withCall.length, 1);
  assert.equal(withCall[0].choices[0].delta.tool_calls[0].index, 0);
  assert.equal(withCall[0].choices[0].delta.tool_calls[0].function.name, 'get_weather');
  const last = chunks.at(-1);
  assert.equal(last.choices[0].finish_reason, 'tool_calls');
  assert.ok(last.usage.completion_tokens > 5);
});

test("the function's result goes back as a 'tool' message and the model answers from it", async () => {
  const first = await create({ messages: [ask], tools: [weather], tool_choice: 'required', temperature: 0 });
  const assistant = first.ok.choices[0].message;
  const result = { role: 'tool', tool_call_id: assistant.tool_calls[0].id, content: JSON.stringify({ city: 'Paris', celsius: 31, sky: 'sunny' }) };
  const r = await create({ messages: [ask, assistant, result], tools: [weather], tool_choice: 'none', temperature: 0, max_tokens: 60 });
  assert.ok(r.ok, JSON.stringify(r));
  const { message, finish_reason } = r.ok.choices[0];
  console.log(`answer from the result: ${JSON.stringify(message.content)} (${r.ok.usage.prompt_tokens} prompt tokens)`);
  assert.equal(finish_reason, 'stop');
  assert.equal(message.tool_calls, undefined);
  assert.ok(!message.content.trimStart().startsWith('{'), 'an answer in words, not the call again');
  assert.match(message.content, /31|sunny/i);
});

test('with tools on offer the model may still answer in text, streamed as text', async () => {
  const r = await create({ messages: [{ role: 'user', content: 'Say hello to Anna in one short sentence.' }], tools: [weather], temperature: 0, stream: true, max_tokens: 40 });
  assert.ok(r.ok, JSON.stringify(r));
  const text = r.ok.map((c) => c.choices[0].delta.content ?? '').join('');
  console.log(`auto, text: ${JSON.stringify(text)}`);
  assert.equal(r.ok.at(-1).choices[0].finish_reason, 'stop');
  assert.ok(r.ok.filter((c) => c.choices[0].delta.content).length > 3, 'the text streams in pieces');
  assert.match(text, /Anna/);

  const clash = await create({ messages: [ask], tools: [weather], tool_choice: 'required', response_format: { type: 'json_object' } });
  assert.match(clash.error, /TypeError: .*cannot both shape the reply/);
  const unknown = await create({ messages: [ask], tools: [weather], tool_choice: { type: 'function', function: { name: 'get_time' } } });
  assert.match(unknown.error, /TypeError: tool_choice/);
  const nothingToCall = await create({ messages: [ask], tools: [], tool_choice: 'required' });
  assert.match(nothingToCall.error, /TypeError: tool_choice: 'required' needs at least one function/);
});

test("OpenAI's content parts are read as their text; other parts are a clear error", async () => {
  assert.equal(planTools([{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }]).messages[0].content, 'a\nb');
  const q = 'What is the capital of France?';
  const asText = await create({ messages: [{ role: 'user', content: `${q}\nAnswer briefly.` }], temperature: 0, max_tokens: 12 });
  const asParts = await create({ messages: [{ role: 'user', content: [{ type: 'text', text: q }, { type: 'text', text: 'Answer briefly.' }] }], temperature: 0, max_tokens: 12 });
  assert.equal(asParts.ok.usage.prompt_tokens, asText.ok.usage.prompt_tokens);
  assert.equal(asParts.ok.choices[0].message.content, asText.ok.choices[0].message.content);
  const image = await create({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }], max_tokens: 4 });
  assert.match(image.error, /content part of type image_url \(only text parts are read/);
});

test("a model whose template has its own tool format calls and reads results in it (SmolLM2 under Qwen3's template)", async () => {
  const r = await page.evaluate(async ([url, templateUrl, weather]) => {
    const { CandlelitEngine } = await import('/pkg/client.js');
    const e = new CandlelitEngine();
    try {
      const info = await e.load({ url }, { chatTemplate: await (await fetch(templateUrl)).text() });
      const messages = [{ role: 'user', content: "What's the weather like in Paris today?" }];
      const called = await e.chat.completions.create({ messages, tools: [weather], tool_choice: 'required', temperature: 0, max_tokens: 60 });
      // The same conversation with the functions handed straight to the template.
      const direct = await e.chat.completions.create({ messages, chat_template_kwargs: { tools: [weather] }, temperature: 0, max_tokens: 1 });
      const plain = await e.chat.completions.create({ messages, temperature: 0, max_tokens: 1 });
      const call = called.choices[0].message;
      const followUp = [...messages, call, { role: 'tool', tool_call_id: call.tool_calls[0].id, content: '{"celsius": 31, "sky": "sunny"}' }];
      const answer = await e.chat.completions.create({ messages: followUp, tools: [weather], temperature: 0, max_tokens: 40 });
      const parsed = followUp.map((m) => (m.tool_calls ? { ...m, content: '', tool_calls: m.tool_calls.map((c) => ({ ...c, function: { ...c.function, arguments: JSON.parse(c.function.arguments) } })) } : m));
      const answerDirect = await e.chat.completions.create({ messages: parsed, chat_template_kwargs: { tools: [weather] }, temperature: 0, max_tokens: 1 });
      return {
        format: info.tool_format, call, finish: called.choices[0].finish_reason,
        withTools: called.usage.prompt_tokens, direct: direct.usage.prompt_tokens, without: plain.usage.prompt_tokens,
        answer: answer.choices[0], answerTokens: answer.usage.prompt_tokens, answerDirect: answerDirect.usage.prompt_tokens,
      };
    } finally {
      e.terminate();
    }
  }, [s.server.base + SMOLLM2, '/models/templates/Qwen-Qwen3-0.6B.jinja', weather]);
  console.log(JSON.stringify(r));
  assert.equal(r.format, 'hermes');
  assert.equal(r.finish, 'tool_calls');
  assert.equal(r.call.tool_calls[0].function.name, 'get_weather');
  assert.match(JSON.parse(r.call.tool_calls[0].function.arguments).city, /Paris/);
  // Qwen3's template wrote its own tools section: the prompt is the template's rendering
  // with the functions handed to it, token for token, not the generic description.
  assert.equal(r.withTools, r.direct);
  assert.ok(r.withTools > r.without + 100, `${r.withTools} vs ${r.without} prompt tokens`);
  // The call and its result went back through the template as they are: the answer is text.
  assert.equal(r.answerTokens, r.answerDirect);
  assert.equal(r.answer.message.tool_calls, undefined);
  assert.ok(r.answer.message.content.length > 0);
});
