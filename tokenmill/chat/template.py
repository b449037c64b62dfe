"""Chat templates: read one from a tokenizer_config.json, render it as transformers does.

A model's chat template is a Jinja string (``chat_template`` in its
``tokenizer_config.json``, or a ``chat_template.jinja`` file next to it).
transformers renders it in an ``ImmutableSandboxedEnvironment`` with
``trim_blocks``/``lstrip_blocks``, the ``loopcontrols`` extension, a
``{% generation %}`` tag, a ``raise_exception`` global, a ``tojson`` filter
that does not escape HTML, and the special tokens (``bos_token``,
``eos_token``, ...) as variables; ``render`` does the same, so the text (and
so the tokens) match ``apply_chat_template``. Tokenizers without a template
get the built-in ChatML one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from tokenmill.errors import UserError

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")
# Special-token variables transformers hands to a template (its special_tokens_map).
TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


@dataclass(frozen=True)
class ChatTemplate:
    source: str  # the Jinja text
    name: str  # "tokenizer" (the model's own) or "chatml"
    tokens: tuple[tuple[str, str], ...] = ()  # (variable, token text), e.g. ("eos_token", "</s>")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    def token(self, name: str) -> str | None:
        return dict(self.tokens).get(name)

    @property
    def bos_token(self) -> str | None:
        return self.token("bos_token")

    @property
    def eos_token(self) -> str | None:
        return self.token("eos_token")

    @property
    def pad_token(self) -> str | None:
        return self.token("pad_token")


def token_text(value) -> str | None:
    """A special token as written in tokenizer_config.json: a string or {"content": ...}."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise UserError(f"special token {value!r} in tokenizer_config.json must be a string or "
                    "an object with a \"content\" string; fix the file")


def _template_of(config: dict, folder: Path | None) -> str | None:
    value = config.get("chat_template")
    if isinstance(value, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    if value is None and folder is not None and (folder / "chat_template.jinja").is_file():
        value = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if value is not None and not isinstance(value, str):
        raise UserError("chat_template in tokenizer_config.json must be a Jinja string, or a list with a "
                        "\"default\" entry; fix the file or set chat.template: chatml")
    return value


def read_tokenizer_config(path: str | Path) -> dict:
    """tokenizer_config.json (a file, or the folder holding it) as a dict."""
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer_config.json"
    if not p.is_file():
        raise UserError(f"tokenizer config not found: {p} (give the model folder holding tokenizer_config.json)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserError(f"{p} is not valid JSON: {exc}; fix the file") from None
    if not isinstance(data, dict):
        raise UserError(f"{p} must hold a JSON object; fix the file")
    return data


def from_config(config: dict, choice: str = "auto", folder: Path | None = None) -> ChatTemplate:
    """The template to use: the config's own (``auto``) or ChatML (``chatml``, or none there)."""
    tokens = tuple((name, text) for name in TOKEN_NAMES if (text := token_text(config.get(name))) is not None)
    own = _template_of(config, folder) if choice == "auto" else None
    if own is None:
        return ChatTemplate(CHATML, "chatml", tokens)
    compile_template(own)  # a broken template fails here, once, not on every row
    return ChatTemplate(own, "tokenizer", tokens)


def load_template(path: str | Path, choice: str = "auto") -> ChatTemplate:
    """Read tokenizer_config.json (file or folder) and pick the template."""
    p = Path(path)
    return from_config(read_tokenizer_config(p), choice, p if p.is_dir() else p.parent)


@lru_cache(maxsize=16)
def compile_template(source: str):
    """The compiled Jinja template, in transformers' sandboxed environment (cached per worker)."""
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        """``{% generation %}...{% endgeneration %}``: renders its body (transformers uses it for masks)."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # Jinja's own tojson escapes HTML characters; transformers' does not.
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(f"chat template does not parse (line {exc.lineno}: {exc.message}); "
                        "fix chat_template or set chat.template: chatml") from None


def render(template: ChatTemplate, messages, add_generation_prompt: bool = False) -> str:
    """The conversation as text. ``messages``: Message objects or {"role", "content"} dicts.

    Raises jinja2.TemplateError when the template refuses the conversation
    (its ``raise_exception``); callers turn that into a reject reason.
    """
    chat = [m if isinstance(m, dict) else {"role": m.role, "content": m.content} for m in messages]
    return compile_template(template.source).render(
        messages=chat, tools=None, documents=None, add_generation_prompt=add_generation_prompt,
        **dict(template.tokens))

