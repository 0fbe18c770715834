"""The LLaMA model: presets, shapes, RoPE, causality, FLOPs and cached generation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from model.config import PRESETS, ModelConfig, TrainConfig, preset
from model.generate import generate, next_token
from model.llama import Llama, apply_rope, rope_tables

TINY = dataclasses.replace(preset("tiny"), vocab_size=97)


def tiny_model(seed: int = 0, **changes: object) -> Llama:
    torch.manual_seed(seed)
    return Llama(dataclasses.replace(TINY, **changes)).eval()


def test_logits_have_one_row_per_position_over_the_vocabulary() -> None:
    model = tiny_model()
    tokens = torch.randint(0, TINY.vocab_size, (3, 11))
    assert model(tokens).shape == (3, 11, TINY.vocab_size)


def test_parameter_shapes_follow_meta_names_without_biases() -> None:
    shapes = {n: tuple(p.shape) for n, p in tiny_model().named_parameters()}
    c = TINY
    assert shapes["tok_embeddings.weight"] == (c.vocab_size, c.dim)
    assert shapes["output.weight"] == (c.vocab_size, c.dim)
    assert shapes["layers.0.attention.wq.weight"] == (c.dim, c.dim)
    assert shapes["layers.0.attention.wk.weight"] == (c.kv_heads * c.head_dim, c.dim)
    assert shapes["layers.0.feed_forward.w1.weight"] == (c.hidden_dim, c.dim)
    assert shapes["layers.0.feed_forward.w2.weight"] == (c.dim, c.hidden_dim)
    assert not any("bias" in n for n in shapes)


def test_seven_b_preset_has_6_74b_parameters_on_meta() -> None:
    with torch.device("meta"):
        model = Llama(preset("7b"))
    assert abs(sum(p.numel() for p in model.parameters()) - 6.74e9) < 0.01e9
    assert preset("llama-7b").hidden_dim == 11008
    assert model.output.weight.is_meta


def test_paper_presets_follow_table_2() -> None:
    rows = {"llama-13b": (5120, 40, 40), "llama-33b": (6656, 52, 60), "llama-65b": (8192, 64, 80)}
    for name, (dim, heads, layers) in rows.items():
        c = PRESETS[name]
        assert (c.dim, c.n_heads, c.n_layers) == (dim, heads, layers)
    assert TrainConfig(preset="33b").peak_lr == 1.5e-4
    assert TrainConfig(preset="7b").peak_lr == 3e-4


def reference_rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Meta's reference: adjacent pairs as complex numbers times e^(i·pos·freq)."""
    _, seq, _, head_dim = x.shape
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].double() / head_dim)
    angles = torch.outer(torch.arange(seq).double(), freqs)
    rotation = torch.polar(torch.ones_like(angles), angles)
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * rotation[None, :, None, :]).flatten(3)


def test_rope_equals_the_complex_reference() -> None:
    x = torch.randn(2, 37, 3, 16)
    cos, sin = rope_tables(16, 37, 10000.0)
    assert cos.dtype == torch.float32
    expected = reference_rope(x, 10000.0).float()
    torch.testing.assert_close(apply_rope(x, cos, sin), expected, rtol=1e-5, atol=1e-5)


def test_rope_keeps_norms_and_makes_scores_depend_on_offsets_only() -> None:
    cos, sin = rope_tables(8, 64, 10000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i: int, j: int) -> torch.Tensor:
        return (
            apply_rope(q, cos[i : i + 1], sin[i : i + 1])
            * apply_rope(k, cos[j : j + 1], sin[j : j + 1])
        ).sum()

    torch.testing.assert_close(score(5, 2), score(40, 37))
    torch.testing.assert_close(apply_rope(q, cos[9:10], sin[9:10]).norm(), q.norm())


def test_logits_at_t_ignore_tokens_after_t() -> None:
    model = tiny_model()
    tokens = torch.randint(0, TINY.vocab_size, (2, 16))
    changed = tokens.clone()
    changed[:, 9:] = torch.randint(0, TINY.vocab_size, (2, 7))
    with torch.no_grad():
        before, after = model(tokens), model(changed)
    torch.testing.assert_close(before[:, :9], after[:, :9])
    assert not torch.allclose(before[:, 9:], after[:, 9:])


def test_grouped_query_attention_equals_repeated_key_value_heads() -> None:
    gqa = tiny_model(n_kv_heads=2)
    full = tiny_model(n_kv_heads=None)
    state = gqa.state_dict()
    group = TINY.n_heads // 2
    for name in list(state):
        if name.endswith(("attention.wk.weight", "attention.wv.weight")):
            heads = state[name].view(2, TINY.head_dim, TINY.dim)
            state[name] = heads.repeat_interleave(group, dim=0).reshape(TINY.dim, TINY.dim)
    full.load_state_dict(state)
    tokens = torch.randint(0, TINY.vocab_size, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(gqa(tokens), full(tokens))


def test_initialisation_scales_output_projections_with_depth() -> None:
    with torch.no_grad():
        model = tiny_model(dim=256, n_heads=4, n_kv_heads=None, n_layers=4)
    stds = [layer.attention.wo.weight.std().item() for layer in model.layers]
    assert stds == sorted(stds, reverse=True)
    assert stds[0] == pytest.approx(0.02 / 2**0.5, rel=0.1)
    assert model.layers[0].attention.wq.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_flops_per_token_is_six_n_plus_attention() -> None:
    config = ModelConfig(dim=64, n_layers=3, n_heads=4, vocab_size=100, multiple_of=32)
    model = Llama(config)
    non_embedding = sum(p.numel() for p in model.parameters()) - 100 * 64
    assert model.num_flops_per_token(128) == 6 * non_embedding + 12 * 3 * 64 * 128


def test_cached_greedy_generation_equals_full_recomputation() -> None:
    model = tiny_model()
    prompt = [1, 5, 9, 3]
    cached = generate(model, prompt, 12)
    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(12):
            tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    assert cached == tokens[len(prompt) :]


def test_generation_stops_at_eos_and_at_the_context_length() -> None:
    model = tiny_model(max_seq_len=16)
    first = generate(model, [1, 2], 5)[0]
    assert generate(model, [1, 2], 5, eos_id=first) == [first]
    assert len(generate(model, [1, 2, 3], 100)) == 13


def test_top_p_samples_only_inside_the_nucleus() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    generator = torch.Generator().manual_seed(0)
    drawn = {next_token(logits, 1.0, 0.7, generator) for _ in range(300)}
    assert drawn == {0, 1}
    assert next_token(logits, 0.0, 0.7, generator) == 0


def test_sampling_at_temperature_follows_the_distribution() -> None:
    logits = torch.log(torch.tensor([0.6, 0.4]))
    generator = torch.Generator().manual_seed(0)
    ones = sum(next_token(logits, 1.0, 1.0, generator) for _ in range(2000))
    assert ones / 2000 == pytest.approx(0.4, abs=0.04)


def test_cross_entropy_at_init_is_near_uniform() -> None:
    model = tiny_model(vocab_size=512)
    tokens = torch.randint(0, 512, (4, 32))
    with torch.no_grad():
        loss = F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
    assert abs(loss.item() - torch.log(torch.tensor(512.0)).item()) < 1.0
