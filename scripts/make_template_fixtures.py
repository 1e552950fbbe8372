#!/usr/bin/env python3
"""Write tests/fixtures/chat-templates.transformers.json: how Python's Jinja, set up as
transformers sets it up for `apply_chat_template`, renders real chat templates.

The templates are llama.cpp's collection (models/templates/, fetched by
scripts/fetch_models.py from llama-cpp-python's source package) and the test models' own
(`tokenizer.chat_template` of the GGUF files). Each is rendered over a few conversations; the
fixture keeps each prompt's SHA-256 and length (not the text: the templates are their
authors'), or the error the template raised. tests/chat_templates.rs renders the same with
the engine and compares. Not part of CI (the fixture is committed). Usage:

    python3 -m venv .venv && .venv/bin/pip install jinja2==3.1.6 gguf
    .venv/bin/python scripts/make_template_fixtures.py
"""
import datetime
import hashlib
import json
import os
import sys

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "chat-templates.transformers.json")
# Gemma 3 270M, a base model, has no template.
GGUF_MODELS = ["smollm2-135m-instruct-q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]

# strftime_now's answer in the fixture (and in the test, through ChatTemplate::fix_time).
FIXED_TIME = datetime.datetime(2026, 9, 29, 12, 34, 56, tzinfo=datetime.timezone.utc)
BOS, EOS = "<s>", "</s>"


def turns(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city's name"}},
                "required": ["city"],
            },
        },
    }
]

CONVERSATIONS = [
    {"add_generation_prompt": True, "messages": turns(("user", "What is the capital of France?"))},
    {
        "add_generation_prompt": True,
        "messages": turns(
            ("system", "You are terse."),
            ("user", "Hi"),
            ("assistant", "Hello! How can I help?"),
            ("user", "Name a color."),
        ),
    },
    {
        "add_generation_prompt": False,
        "messages": turns(
            ("system", "You are terse."),
            ("user", "Hi"),
            ("assistant", "Hello! How can I help?"),
            ("user", "Name a color."),
            ("assistant", "Blue."),
        ),
    },
    {
        # Whitespace at both ends, markup, quotes, CJK and an emoji: what templates strip or
        # escape shows here.
        "add_generation_prompt": True,
        "messages": turns(
            ("user", "  spaced\n  text with <b>tags</b> & \u201cquotes\u201d \u4f60\u597d \U0001F642 "),
            ("assistant", "  A reply with a trailing newline\n"),
            ("user", "{\"json\": [1, 2.5, null]}"),
        ),
    },
    {"add_generation_prompt": True, "messages": turns(("system", "Only a system prompt."))},
    # Tools offered (transformers' `tools=`), a call with its result, and an earlier reply's
    # thinking (`reasoning_content`, which Qwen3's template reads), as OpenAI's API sends them.
    {
        "add_generation_prompt": True,
        "tools": TOOLS,
        "messages": turns(("system", "You are terse."), ("user", "What's the weather in Paris?")),
    },
    {
        "add_generation_prompt": True,
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"celsius": 21, "sky": "sunny"}'},
        ],
    },
    {
        "add_generation_prompt": True,
        "messages": [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "Two and two make four."},
            {"role": "user", "content": "And 3+3?"},
        ],
    },
]


# Template switches a request may pass (`chat_template_kwargs`), each rendered for the
# templates that name it: thinking off and on (Qwen3, DeepSeek, SmolLM3, GLM, Gemma 4, …),
# gpt-oss's reasoning effort.
KWARGS = [{"enable_thinking": False}, {"enable_thinking": True}, {"reasoning_effort": "low"}]


class Generation(jinja2.ext.Extension):
    """transformers' AssistantTracker: `{% generation %}` marks the assistant's tokens for
    training masks; rendering a prompt, it renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def environment():
    # As transformers builds it (chat_template_utils._compile_jinja_template).
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols]
    )

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: FIXED_TIME.strftime(fmt)
    return env


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def fold_system(messages):
    """The engine's fallback for templates that refuse system messages (ChatTemplate::render):
    the system prompts, joined by a blank line, open the first user message."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not system or not users:
        return None
    out = []
    for i, m in enumerate(messages):
        if m["role"] == "system":
            continue
        if i == users[0]:
            m = {**m, "content": "\n\n".join(system) + "\n\n" + m["content"]}
        out.append(m)
    return out


def render_all(source):
    try:
        template = environment().from_string(source)
    except jinja2.exceptions.TemplateError as e:
        return {"parse_error": str(e)}
    def render(messages, add_generation_prompt, kwargs, tools=None):
        try:
            text = template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                # transformers passes these even when a request has none; kwargs override.
                **{"bos_token": BOS, "eos_token": EOS, "tools": tools, "documents": None, **kwargs},
            )
            return {"sha256": sha256(text.encode()), "chars": len(text)}
        except Exception as e:  # the template's own raise_exception, or an undefined value
            return {"error": f"{type(e).__name__}: {e}"}

    def render_conversations(kwargs):
        renders = []
        for c in CONVERSATIONS:
            result = render(c["messages"], c["add_generation_prompt"], kwargs, c.get("tools"))
            folded = fold_system(c["messages"])
            if "error" in result and folded is not None:
                result["folded"] = render(folded, c["add_generation_prompt"], kwargs, c.get("tools"))
            renders.append(result)
        return renders

    out = {"renders": render_conversations({})}
    named = [k for k in KWARGS if all(key in source for key in k)]
    if named:
        out["with_kwargs"] = [{"kwargs": k, "renders": render_conversations(k)} for k in named]
    return out


def gguf_template(path):
    import gguf

    field = gguf.GGUFReader(path).fields.get("tokenizer.chat_template")
    return None if field is None else bytes(field.parts[field.data[0]]).decode()


def main():
    templates = {}
    folder = os.path.join(MODELS, "templates")
    names = sorted(f for f in os.listdir(folder) if f.endswith(".jinja"))
    if not names:
        sys.exit("no templates in models/templates: run scripts/fetch_models.py first")
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        templates[name] = {"sha256": sha256(data), **render_all(data.decode())}
    for model in GGUF_MODELS:
        source = gguf_template(os.path.join(MODELS, model))
        if source is None:  # Gemma 3 270M is a base model: the engine's fallback applies
            continue
        templates["gguf:" + model] = {"sha256": sha256(source.encode()), **render_all(source)}
    fixture = {
        "generator": f"jinja2 {jinja2.__version__}, transformers' environment",
        "fixed_time": int(FIXED_TIME.timestamp()),
        "bos_token": BOS,
        "eos_token": EOS,
        "conversations": CONVERSATIONS,
        "templates": templates,
    }
    with open(OUT, "w") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=1)
        f.write("\n")
    errors = sum("error" in r for t in templates.values() for r in t.get("renders", []))
    print(f"{OUT}: {len(templates)} templates x {len(CONVERSATIONS)} conversations, {errors} renders raised")


if __name__ == "__main__":
    main()
