// Function calling in OpenAI's shape (`tools`, `tool_choice`, `tool_calls`, role 'tool') for
// any chat model. A model whose chat template offers tools itself (Qwen 2.5/3, Llama 3.x,
// Granite 4: the engine reports its `tool_format`) gets them as it was trained: the template
// renders the functions, calls and results, and the reply is read in its own call format.
// Any other model gets the functions described in the system message, and earlier calls and
// results as ordinary turns (every chat template renders those, Gemma's too). When a call is
// required the reply is decoded under a grammar of the allowed calls, so that even a small
// model returns a well-formed call to a function that exists.

/** The functions a request offers, checked: `[{ name, description, parameters }]`. */
function functionsOf(tools) {
  if (!Array.isArray(tools)) throw new TypeError('tools: an array of { type: "function", function: { name, parameters } }');
  return tools.map((t, i) => {
    const f = t?.type === 'function' ? t.function : null;
    if (!f || typeof f.name !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(f.name)) throw new TypeError(`tools[${i}]: a function needs a name of letters, digits, _ or - (at most 64)`);
    const parameters = f.parameters ?? { type: 'object', properties: {} };
    // Arguments the schema does not name are left out (a small model invents them), unless the
    // schema itself says what else may come.
    const closed = parameters.type === 'object' && parameters.additionalProperties === undefined ? { ...parameters, additionalProperties: false } : parameters;
    return { name: f.name, description: f.description ?? '', parameters: closed, declared: parameters };
  });
}

/** 'auto', 'none', 'required', or the one function a request names. */
function choiceOf(toolChoice, functions) {
  if (toolChoice === undefined || toolChoice === null) return functions.length ? { mode: 'auto', allowed: functions } : { mode: 'none', allowed: [] };
  if (toolChoice === 'none') return { mode: 'none', allowed: [] };
  if (toolChoice === 'auto') return { mode: 'auto', allowed: functions };
  if (toolChoice === 'required') {
    if (!functions.length) throw new TypeError("tool_choice: 'required' needs at least one function in tools");
    return { mode: 'required', allowed: functions };
  }
  const name = toolChoice?.function?.name;
  const f = functions.find((x) => x.name === name);
  if (toolChoice?.type !== 'function' || !f) throw new TypeError(`tool_choice: 'auto', 'none', 'required' or { type: 'function', function: { name } } naming one of the tools, not ${JSON.stringify(toolChoice)}`);
  return { mode: 'required', allowed: [f] };
}

function describe(functions, required) {
  const lines = functions.map((f) => `- ${f.name}${f.description ? `: ${f.description}` : ''}\n  arguments (JSON Schema): ${JSON.stringify(f.parameters)}`);
  return [
    required ? 'Answer by calling one of these functions.' : 'You can call these functions when they help to answer.',
    'To call one, reply with only a JSON object {"name": "<function name>", "arguments": {…}} and nothing else; the result comes back in the next message.',
    'Functions:',
    ...lines,
  ].join('\n');
}

/**
 * A turn's text: OpenAI's content parts (`[{ type: 'text', text }]`) one after another on
 * their own lines, as the engine reads them; the model reads text only.
 */
function textOf(content) {
  if (!Array.isArray(content)) return String(content ?? '');
  return content
    .map((p) => {
      if (p?.type !== 'text' || typeof p.text !== 'string') throw new TypeError(`a content part of type ${p?.type ?? '(none)'} (only text parts are read: the model reads text)`);
      return p.text;
    })
    .join('\n');
}

/** A call's arguments as the object OpenAI's API sends as text; text that is not JSON stays text. */
function argumentsOf(call) {
  const args = call.function?.arguments ?? {};
  if (typeof args !== 'string') return args;
  try {
    return JSON.parse(args);
  } catch {
    return args;
  }
}

/** A call as the model writes it: {"name": …, "arguments": {…}}. */
function callText(call) {
  return JSON.stringify({ name: call.function?.name, arguments: argumentsOf(call) });
}

/** Layout of a decoded call: JSON as Python's json.dumps writes it, as templates print calls. */
const LAYOUT = { whitespace_flexible: false, item_separator: ', ', key_separator: ': ' };

/**
 * For a template that offers tools itself: the messages as they are (a call's `arguments`
 * string read as the object templates print), the functions for the template's `tools`,
 * and a required call as a grammar of the model's own format.
 */
function planNative(messages, choice, format) {
  const out = messages.map((m) => {
    if (m.role !== 'assistant' || !Array.isArray(m.tool_calls)) return m;
    const tool_calls = m.tool_calls.map((c) => ({ ...c, function: { ...c.function, arguments: argumentsOf(c) } }));
    // OpenAI's `content: null` beside calls is '' here, as llama.cpp's server makes it:
    // templates test `'</think>' in message.content` (Qwen3), which fails on none.
    return { ...m, content: m.content ?? '', tool_calls };
  });
  const key = format === 'llama3' ? 'parameters' : 'arguments';
  const schema = {
    anyOf: choice.allowed.map((f) => ({
      type: 'object',
      properties: { name: { const: f.name }, [key]: f.parameters },
      required: ['name', key],
      additionalProperties: false,
    })),
    'x-guidance': LAYOUT,
  };
  let constraint;
  if (choice.mode === 'required') {
    constraint = format === 'hermes'
      ? { type: 'lark', grammar: `start: "<tool_call>\\n" call "\\n</tool_call>"\ncall: %json ${JSON.stringify(schema)}` }
      : { type: 'json_schema', schema };
  }
  const offered = choice.mode === 'none' ? undefined : choice.allowed.map((f) => ({ type: 'function', function: { name: f.name, ...(f.description ? { description: f.description } : {}), parameters: f.declared } }));
  return { messages: out, constraint, mode: choice.mode, allowed: choice.allowed, tools: offered };
}

/**
 * The request's messages as the engine takes them, plus the constraint a required call
 * decodes under, and (for a template with its own tool format) the `tools` it renders.
 */
export function planTools(messages, tools, toolChoice, format = null) {
  const functions = tools == null ? [] : functionsOf(tools);
  const choice = choiceOf(toolChoice, functions);
  if (format === 'hermes' || format === 'llama3') return planNative(messages, choice, format);
  const names = new Map();
  const out = [];
  let toolTurn = null;
  for (const m of messages) {
    if (m.role === 'assistant' && Array.isArray(m.tool_calls) && m.tool_calls.length) {
      for (const c of m.tool_calls) names.set(c.id, c.function?.name);
      const text = [textOf(m.content), ...m.tool_calls.map(callText)].filter(Boolean).join('\n');
      out.push({ role: 'assistant', content: text });
    } else if (m.role === 'tool') {
      const name = names.get(m.tool_call_id) ?? m.name ?? 'the function';
      const result = `The function ${name} returned: ${typeof m.content === 'string' || Array.isArray(m.content) ? textOf(m.content) : JSON.stringify(m.content)}`;
      // Results of several calls are one turn: templates such as Gemma's want turns to alternate.
      const prev = out.at(-1);
      if (prev?.fromTool) prev.content += `\n${result}`;
      else out.push({ role: 'user', content: result, fromTool: true });
      toolTurn = out.at(-1);
    } else {
      out.push({ role: m.role, content: textOf(m.content) });
    }
  }
  // Results that end the conversation restate the question they serve: a small model
  // otherwise repeats the call it sees in the turn before (SmolLM2 135M did, every time).
  if (toolTurn && out.at(-1) === toolTurn) {
    const question = out.slice(0, -1).findLast((m) => m.role === 'user' && !m.fromTool);
    toolTurn.content += question ? `\nAnswer my question "${question.content}" in a sentence, using this result.` : '\nAnswer using this result.';
  }
  if (choice.mode !== 'none') {
    const section = describe(choice.allowed, choice.mode === 'required');
    const system = out.find((m) => m.role === 'system');
    if (system) system.content = `${system.content}\n\n${section}`;
    else out.unshift({ role: 'system', content: section });
  }
  const constraint =
    choice.mode === 'required'
      ? {
          type: 'json_schema',
          schema: {
            anyOf: choice.allowed.map((f) => ({
              type: 'object',
              properties: { name: { const: f.name }, arguments: f.parameters },
              required: ['name', 'arguments'],
              additionalProperties: false,
            })),
          },
        }
      : undefined;
  return { messages: out.map(({ role, content }) => ({ role, content })), constraint, mode: choice.mode, allowed: choice.allowed };
}

let nextCall = 0;

/**
 * The reply's function call, or null when it is plain text: the whole reply (trimmed, also
 * inside a ```json fence or <tool_call> tags, as tool-trained models write it) must be a JSON
 * object naming one of the allowed functions.
 */
export function parseToolCall(text, allowed) {
  const body = text
    .trim()
    .replace(/^<tool_call>\s*([\s\S]*?)\s*<\/tool_call>$/, '$1')
    .replace(/^```(?:json)?\s*([\s\S]*?)\s*```$/, '$1');
  if (!body.startsWith('{')) return null;
  let v;
  try {
    v = JSON.parse(body);
  } catch {
    return null;
  }
  const args = v?.arguments ?? v?.parameters;
  if (!allowed.some((f) => f.name === v?.name) || (args !== undefined && (typeof args !== 'object' || args === null))) return null;
  return { id: `call_${Date.now().toString(36)}${(nextCall++).toString(36)}`, type: 'function', function: { name: v.name, arguments: JSON.stringify(args ?? {}) } };
}

/**
 * The reply's calls: one as `parseToolCall` reads it, or several `<tool_call>` blocks one
 * after another (Qwen calls functions in parallel that way); null when it is text.
 */
export function parseToolCalls(text, allowed) {
  const one = parseToolCall(text, allowed);
  if (one) return [one];
  const blocks = text.trim().split(/(?<=<\/tool_call>)\s*(?=<tool_call>)/);
  if (blocks.length < 2) return null;
  const calls = blocks.map((b) => parseToolCall(b, allowed));
  return calls.every(Boolean) ? calls : null;
}

/** Whether streamed text so far might still become a call (then it is held back). */
export function mightBeCall(text) {
  const t = text.trimStart();
  const opens = (tag) => tag.startsWith(t.slice(0, tag.length)) || t.startsWith(tag);
  return t === '' || t.startsWith('{') || opens('<tool_call>') || opens('```json');
}
