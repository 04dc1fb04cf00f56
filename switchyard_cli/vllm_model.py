"""Write a tiny random-weight Llama model with a BPE tokenizer and a chat template, for vLLM on CPU.

Run by the vLLM venv's python (``switchyard_cli.vllm_env.ensure_model`` does it), never
imported by the main venv: it needs torch, transformers and tokenizers, which only the vLLM
venv has (their imports are inside :func:`main`). Nothing is downloaded:

- a byte-level BPE tokenizer trained with ``tokenizers`` on text made here (seeded),
  wrapped in ``PreTrainedTokenizerFast`` with a chat template, so vLLM's Anthropic and
  OpenAI chat endpoints can render conversations;
- ``LlamaForCausalLM`` with hidden size 128, 2 layers, 2 heads (head_dim 64: vLLM's CPU
  attention kernels reject head_dim 16), seeded random weights, float32, safetensors.

The text it produces is gibberish; its serving behaviour (batching, KV cache, prefix
caching, usage, metrics) is vLLM's own. About 1.5 MB on disk.

    <vllm-venv>/bin/python switchyard_cli/vllm_model.py --out DIR
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

MODEL_VERSION = 1  # bump when what this writes changes: the cache directory is named after it
VOCAB_SIZE = 2048
MAX_POSITIONS = 2048
SEED = 20251127
SPECIAL_TOKENS = ["<|begin|>", "<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_WORD_PARTS = (
    "ka to ri su me no ha shi ra ve lo qua zen tor pil mar ost eft ing ed er ly an "
    "the of and to in is for on with as at by from that this it be are was route model cache "
    "token prompt reply user system worker gateway replica prefix request latency cost"
)


def corpus(lines: int, rng: random.Random) -> list[str]:
    """Seeded pseudo-text: words of syllables, punctuation, digits, a little JSON and code."""
    parts = _WORD_PARTS.split()
    out = []
    for _ in range(lines):
        words = ["".join(rng.choices(parts, k=rng.randint(1, 3))) for _ in range(rng.randint(4, 18))]
        line = " ".join(words)
        if rng.random() < 0.3:
            line += f" {rng.randint(0, 10_000)}."
        if rng.random() < 0.1:
            line = '{"key": "' + line[:20] + '", "n": ' + str(rng.randint(0, 99)) + "}"
        if rng.random() < 0.1:
            line = f"def f_{rng.randint(0, 99)}(x):\n    return x * {rng.randint(2, 9)}"
        out.append(line.capitalize())
    return out


def write_model(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(SEED)
    torch.manual_seed(SEED)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(20_000, rng), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|begin|>",
        eos_token="<|end|>",
        pad_token="<|pad|>",
        model_max_length=MAX_POSITIONS,
    )
    fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write the model into")
    write_model(parser.parse_args().out)


if __name__ == "__main__":
    main()
