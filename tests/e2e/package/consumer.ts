// A JS developer's code against the installed package's types (tests/e2e/package.test.mjs
// type-checks it with `tsc --strict` after `npm pack`). The @ts-expect-error lines must
// stay errors: they fail the check if the types loosen to `any`.

import { CandlelitEngine, type ChatCompletionChunk, type LabelScore, type ModelInfo, type StoredModel } from 'candlelit';
import type { CandlelitChat, ReplyDetail } from 'candlelit/widget.js';

export async function chat(out: { textContent: string | null }): Promise<string> {
  const engine = await CandlelitEngine.create({ simd: 'auto' });
  const aborter = new AbortController();
  const info: ModelInfo = await engine.load(
    { url: '/models/smollm2-135m-instruct-q4_1.gguf' },
    { onProgress: (p) => console.log(p.phase, p.loaded / p.total, p.part ?? 1), backend: 'auto', signal: aborter.signal },
  );
  const layers: number = info.layers;
  const stream = await engine.chat.completions.create({
    messages: [{ role: 'user', content: 'What is the capital of France?' }],
    stream: true,
    temperature: 0.2,
    max_tokens: 64,
    truncation: 'auto',
  });
  let text = '';
  for await (const chunk of stream) {
    const c: ChatCompletionChunk = chunk;
    text += c.choices[0]?.delta?.content ?? '';
    if (c.usage) console.log(c.usage.prompt_tokens_details.cached_tokens, c.usage.extra.decode_tokens_per_s);
  }
  const whole = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], response_format: { type: 'json_object' } });
  const content: string = whole.choices[0].message.content ?? '';
  // Function calling: the call comes back as JSON text and the result goes back as a 'tool' message.
  const tools = [{ type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
  const asked = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, tool_choice: 'required' });
  const call = asked.choices[0].message.tool_calls?.[0];
  if (call && asked.choices[0].finish_reason === 'tool_calls') {
    const args: { city?: string } = JSON.parse(call.function.arguments);
    await engine.chat.completions.create({
      messages: [asked.choices[0].message, { role: 'tool', tool_call_id: call.id, content: JSON.stringify({ city: args.city, celsius: 18 }) }],
      tools,
    });
  }
  // @ts-expect-error tool_choice names a function as { type: 'function', function: { name } }
  await engine.chat.completions.create({ messages: [], tools, tool_choice: 'get_weather' });
  const completion = await engine.completions.create({ prompt: 'The capital of France is', max_tokens: 8, temperature: 0 });
  const continued: string = completion.choices[0].text;
  for await (const c of await engine.completions.create({ prompt: continued, stream: true })) text += c.choices[0].text;
  // @ts-expect-error text completions take a prompt, not messages
  await engine.completions.create({ messages: [] });
  const labels: LabelScore[] = await engine.sentiment('Great!', { signal: aborter.signal });
  const best: number = labels[0].probability;
  const { value } = await engine.extract<{ name: string }>('Ann, 30', { type: 'object', properties: { name: { type: 'string' } } }, { signal: aborter.signal });
  const name: string = value.name;
  const { data } = await engine.embeddings.create({ input: ['a', 'b'] });
  const dims: number = data[0].embedding.length;
  const stored: StoredModel[] = await engine.listStoredModels();
  if (stored[0]?.parts) await engine.deleteStoredModel(stored[0].name);
  await engine.load([new File([], 'm-00002-of-00002.gguf'), new File([], 'm-00001-of-00002.gguf')]);

  // @ts-expect-error a model source is a URL, a Blob, parts, or a stored name
  await engine.load(42);
  // @ts-expect-error temperature is a number
  await engine.chat.completions.create({ messages: [], temperature: 'hot' });
  // @ts-expect-error the backend is 'auto', 'webgpu' or 'cpu'
  await engine.load('/m.gguf', { backend: 'tpu' });
  // @ts-expect-error roles and content are strings
  await engine.chat.completions.create({ messages: [{ role: 'user', content: 7 }] });

  // Importing the widget's types declares the element and its events.
  const widget: CandlelitChat | null = document.querySelector('candlelit-chat');
  widget?.addEventListener('candlelit-reply', (e) => {
    const detail: ReplyDetail = e.detail;
    console.log(detail.content, detail.finish_reason);
  });
  const ready: boolean = widget?.ready ?? false;
  // @ts-expect-error the reply's content is a string
  widget?.addEventListener('candlelit-reply', (e) => e.detail.content.toFixed());
  out.textContent = `${text} ${content} ${best} ${name} ${dims} ${layers} ${ready}`;
  return text;
}
