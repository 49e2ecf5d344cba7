"""Shared wrapper for ``transformers`` decoder backbones (Llama, Qwen3) fed with ``inputs_embeds``.

The wrapped model has no vocabulary table (``embed_tokens`` is removed) and its final norm is an
identity (the heads normalise their own input). ``backbone_kwargs`` use the transformers config
field names; ``hidden_size`` is always the model's ``hidden_dim``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from mouse.models.base import Model
from mouse.models.embedding import TokenType
from mouse.models.heads.swiglu import swiglu_linear

__all__ = ["TransformerModel"]

# Keys every decoder accepts, with the MOUSE defaults (the transformers defaults describe 7B models).
_COMMON_DEFAULTS: dict[str, Any] = {
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": None,  # None -> num_attention_heads
    "intermediate_size": None,  # None -> 4 * hidden_dim
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "max_position_embeddings": 4096,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "attn_implementation": "sdpa",  # "sdpa" | "eager"
}
_ATTN_IMPLEMENTATIONS = ("sdpa", "eager")


class TransformerModel(Model):
    """A :class:`Model` whose backbone is a ``transformers`` decoder (subclasses set the classes)."""

    _config_cls: type
    _model_cls: type
    _extra_defaults: dict[str, Any] = {}
    _forbidden: dict[str, str] = {}
    use_fast_path: bool = True  # False: run the transformers forward (the reference implementation)
    gradient_checkpointing: bool = False  # set with set_gradient_checkpointing()

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each decoder layer's activations in the backward instead of storing them.

        Memory for activations drops from one set per layer to the layer inputs, for about one more
        forward per step; losses and gradients are unchanged. It applies to training forwards only
        (``model.train()``, autograd on, no cache): evaluation and KV-cache decoding are as before.
        The transformers forward (``use_fast_path = False``) uses transformers' own checkpointing.
        """
        from transformers.utils import logging as hf_logging

        self.gradient_checkpointing = bool(enabled)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # its "no input embeddings" note: MOUSE feeds inputs_embeds
        tf = self.transformer  # activation_checkpointing_*: transformers >= 5 (gradient_* before)
        try:
            if enabled:
                (getattr(tf, "activation_checkpointing_enable", None) or tf.gradient_checkpointing_enable)(
                    {"use_reentrant": False}
                )
            else:
                (getattr(tf, "activation_checkpointing_disable", None) or tf.gradient_checkpointing_disable)()
        finally:
            hf_logging.set_verbosity(verbosity)

    # ------------------------------------------------------------------------------------- building
    def _resolve_backbone_kwargs(self, backbone_kwargs: dict[str, Any]) -> dict[str, Any]:
        name = type(self).__name__
        defaults = {**_COMMON_DEFAULTS, **self._extra_defaults}
        for key, why in self._forbidden.items():
            if key in backbone_kwargs:
                raise ValueError(f"{name} backbone_kwargs: '{key}' is not allowed: {why}")
        unknown = sorted(set(backbone_kwargs) - set(defaults))
        if unknown:
            raise ValueError(
                f"{name} backbone_kwargs: unknown key(s) {unknown}; allowed keys are {sorted(defaults)}."
            )
        kw = {**defaults, **backbone_kwargs}
        if kw["num_key_value_heads"] is None:
            kw["num_key_value_heads"] = kw["num_attention_heads"]
        if kw["intermediate_size"] is None:
            kw["intermediate_size"] = 4 * self.hidden_dim
        heads, kv_heads = int(kw["num_attention_heads"]), int(kw["num_key_value_heads"])
        if heads < 1 or kv_heads < 1 or heads % kv_heads:
            raise ValueError(
                f"{name} backbone_kwargs: num_attention_heads ({heads}) must be a positive multiple of "
                f"num_key_value_heads ({kv_heads})."
            )
        if "head_dim" not in kw and self.hidden_dim % heads:
            raise ValueError(
                f"{name}: hidden_dim ({self.hidden_dim}) must be divisible by num_attention_heads ({heads})."
            )
        if int(kw["num_hidden_layers"]) < 1 or int(kw["max_position_embeddings"]) < 1:
            raise ValueError(
                f"{name} backbone_kwargs: num_hidden_layers and max_position_embeddings must be >= 1, got "
                f"{kw['num_hidden_layers']} and {kw['max_position_embeddings']}."
            )
        if kw["attn_implementation"] not in _ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"{name} backbone_kwargs: attn_implementation must be one of {_ATTN_IMPLEMENTATIONS}, "
                f"got {kw['attn_implementation']!r}."
            )
        return kw

    def _init_backbone(self, backbone_kwargs: dict[str, Any]) -> dict[str, Any]:
        kw = self._resolve_backbone_kwargs(backbone_kwargs)
        hf_kw = {k: v for k, v in kw.items() if k != "attn_implementation"}
        config = self._config_cls(
            hidden_size=self.hidden_dim,
            vocab_size=1,
            pad_token_id=None,
            bos_token_id=None,
            eos_token_id=None,
            use_cache=False,
            tie_word_embeddings=False,
            attn_implementation=kw["attn_implementation"],
            **hf_kw,
        )
        self.transformer = self._model_cls(config)
        self.transformer.embed_tokens = None  # no vocabulary: the model is fed inputs_embeds
        self.transformer.norm = nn.Identity()  # heads normalise their own input
        self._max_tokens = int(kw["max_position_embeddings"])
        return kw

    @property
    def max_context_tokens(self) -> int | None:
        return self._max_tokens

    # -------------------------------------------------------------------------------------- forward
    def backbone_forward(
        self,
        embeds: torch.Tensor,
        token_type: torch.Tensor,
        cache: dict[str, Any] | None = None,
        use_cache: bool = False,
        cache_position: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, dict[str, Any] | None]:
        """Causal decoder over ``embeds [B, T, D]``; PAD tokens (``token_type == 0``) are not attended.

        ``cache`` (from a previous call with ``use_cache=True``, updated in place) holds the keys and
        values, ``num_tokens`` and ``token_valid`` (bool ``[B, past]``, or None while every token is
        valid). ``cache_position`` (``[T]`` int64), if given, must continue the cache.
        Runs :meth:`_fast_forward` unless ``self.use_fast_path`` is False (or sliding windows/eager
        attention are configured), in which case the transformers forward runs (:meth:`_hf_forward`).
        """
        B, T, _ = embeds.shape
        past = int(cache["num_tokens"]) if cache is not None else 0
        if cache_position is not None:
            cache_position = torch.as_tensor(cache_position, device=embeds.device)
            expected = torch.arange(past, past + T, device=embeds.device)
            if cache_position.shape != (T,) or not torch.equal(cache_position, expected):
                raise ValueError(
                    f"cache_position must be the {T} positions right after the cache ({past}..{past + T - 1}), "
                    f"got {cache_position.tolist()}; pass cache=None to start over."
                )
        if past + T > self._max_tokens:
            raise ValueError(
                f"The context would hold {past + T} tokens, more than max_position_embeddings="
                f"{self._max_tokens} ({self.max_context_steps} steps of {self.tokens_per_step} tokens); "
                f"start a new context (cache=None) or use a model with a longer context."
            )
        fast = self.use_fast_path and self._fast_supported
        if cache is not None and cache.get("fast", False) != fast:
            raise ValueError("The cache was made by the other forward path; pass cache=None to start over.")

        # Validity of every key (None while all are valid: the common, mask-free case).
        valid = token_type != int(TokenType.PAD)
        past_valid = cache.get("token_valid") if cache is not None else None
        if past_valid is None and not bool(valid.all()):
            past_valid = torch.ones(B, past, dtype=torch.bool, device=embeds.device)
        full_valid = torch.cat((past_valid, valid), dim=1) if past_valid is not None else None

        if fast:
            h = self._fast_forward(embeds, past, full_valid, cache if use_cache else None, use_cache)
            if not use_cache:
                return h, None
            cache = h[1]
            h = h[0]
        else:
            h, pkv = self._hf_forward(embeds, past, full_valid, cache, use_cache)
            if not use_cache:
                return h, None
            cache = cache if cache is not None else {"fast": False}
            cache["past_key_values"] = pkv
        cache.update(num_tokens=past + T, token_valid=full_valid)
        return h, cache

    def _attention_mask(self, B: int, T: int, past: int, full_valid: torch.Tensor | None, device) -> Any:
        """``None`` (plain causal from position 0), or a bool mask ``[T, past+T]`` / ``[B, 1, T, past+T]``.

        A key is attended if causal and valid, or if it is the query itself (a PAD row is never empty).
        """
        if full_valid is None and (past == 0 or T == 1):
            return None
        q_pos = torch.arange(past, past + T, device=device)
        k_pos = torch.arange(past + T, device=device)
        causal = k_pos[None, :] <= q_pos[:, None]
        if full_valid is None:
            return causal
        own = k_pos[None, :] == q_pos[:, None]
        return (causal & (full_valid[:, None, :] | own))[:, None]

    def _hf_forward(self, embeds, past, full_valid, cache, use_cache):
        """The transformers forward (reference path): ``(hidden [B, T, D], DynamicCache or None)``."""
        from transformers import DynamicCache

        B, T, _ = embeds.shape
        mask = None
        if full_valid is not None:
            mask = self._attention_mask(B, T, past, full_valid, embeds.device)
        pkv = cache["past_key_values"] if cache is not None else (DynamicCache() if use_cache else None)
        positions = torch.arange(past, past + T, device=embeds.device)
        out = self.transformer(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions.unsqueeze(0),
            past_key_values=pkv,
            use_cache=use_cache,
        )
        return out.last_hidden_state, out.past_key_values if use_cache else None

    # ----------------------------------------------------------------------------------- fast path
    @property
    def _fast_supported(self) -> bool:
        cfg = self.transformer.config
        return cfg._attn_implementation == "sdpa" and not getattr(cfg, "use_sliding_window", False)

    def _rope(self, end: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 tables ``(cos, sin_signed)`` of shape ``[>= end, H + 2 * Hkv, head_dim]``.

        Built once from the wrapped model's rotary module, so that, for the fused ``[.., q | k | v, hd]``
        heads, ``rope(x) = x * cos + x.roll(head_dim // 2, -1) * sin_signed``: ``sin_signed`` carries
        the sign of HF's ``rotate_half`` (first half negated), and the value heads get ``cos = 1``,
        ``sin = 0`` (left unchanged).
        """
        table = self.__dict__.get("_rope_table")
        if table is None or table[0].shape[0] < end or table[0].device != device:
            n = max(end, min(self._max_tokens, 1024))
            cfg = self.transformer.config
            qk, kv = cfg.num_attention_heads + cfg.num_key_value_heads, cfg.num_key_value_heads
            # Normal tensors even under inference_mode: the table is reused by later training calls.
            with torch.inference_mode(False), torch.no_grad(), torch.autocast(device.type, enabled=False):
                dummy = torch.zeros(1, device=device, dtype=torch.float32)
                cos, sin = self.transformer.rotary_emb(dummy, torch.arange(n, device=device)[None])
                cos, sin = cos[0].float()[:, None], sin[0].float()[:, None]  # [n, 1, hd]
                half = sin.shape[-1] // 2
                sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
                cos = torch.cat((cos.expand(-1, qk, -1), torch.ones_like(cos).expand(-1, kv, -1)), dim=1)
                sin = torch.cat((sin.expand(-1, qk, -1), torch.zeros_like(sin).expand(-1, kv, -1)), dim=1)
                table = (cos, sin)
            self.__dict__["_rope_table"] = table  # not a buffer: derived, never saved
        return table

    def _fused_weights(self) -> list[tuple]:
        """Per layer ``(w_qkv, b_qkv, w_gate_up, b_gate_up)``: concatenated projection weights.

        With autograd on they are concatenated at every call (gradients flow to the parameters) and
        ``w_gate_up`` is None for SiLU MLPs (two matmuls train faster on CPU than one fused one);
        with autograd off they are cached and rebuilt whenever a parameter changes (its version).
        """
        if torch.is_grad_enabled():
            return self._concat_weights(gate_up=self.transformer.config.hidden_act != "silu")
        key = self._weights_key()
        cached = self.__dict__.get("_fused_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        with torch.inference_mode(False), torch.no_grad():  # cache normal (not inference-mode) tensors
            fused = self._concat_weights(gate_up=True)
        self.__dict__["_fused_cache"] = (key, fused)
        return fused

    def _concat_weights(self, gate_up: bool) -> list[tuple]:
        fused = []
        for layer in self.transformer.layers:
            attn, mlp = layer.self_attn, layer.mlp
            projs = (attn.q_proj, attn.k_proj, attn.v_proj)
            w_qkv = torch.cat([m.weight for m in projs])
            b_qkv = torch.cat([m.bias for m in projs]) if attn.q_proj.bias is not None else None
            w_gu = b_gu = None
            if gate_up:
                w_gu = torch.cat((mlp.gate_proj.weight, mlp.up_proj.weight))
                if mlp.gate_proj.bias is not None:
                    b_gu = torch.cat((mlp.gate_proj.bias, mlp.up_proj.bias))
            fused.append((w_qkv, b_qkv, w_gu, b_gu))
        return fused

    def _weights_key(self) -> tuple:
        """``(data_ptr, version)`` of every decoder-layer parameter: changes whenever one is updated.

        Walks ``_modules`` / ``_parameters`` directly (read live, so replaced submodules or parameters
        are seen): several times cheaper than ``parameters()``, and it runs at every decode step.
        """
        params: list[torch.Tensor] = []
        stack: list[nn.Module] = [self.transformer.layers]
        while stack:
            module = stack.pop()
            if module is None:  # a submodule slot set to None
                continue
            params += module._parameters.values()
            stack += module._modules.values()
        return tuple((p.data_ptr(), p._version) for p in params if p is not None)

    def _fast_forward(self, x, past, full_valid, cache, use_cache):
        """Decoder layers with fused QKV / gate-up matmuls, SDPA and a preallocated KV cache.

        Same weights and math as the transformers forward (a test checks they agree).
        Returns ``hidden [B, T, D]`` or ``(hidden, cache)`` when ``use_cache``.
        """
        B, T, D = x.shape
        cfg = self.transformer.config
        layers = self.transformer.layers
        H, Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
        hd = layers[0].self_attn.head_dim
        scale = layers[0].self_attn.scaling
        cos, sin = self._rope(past + T, x.device)
        cos, sin = cos[past : past + T], sin[past : past + T]  # [T, H + 2 Hkv, hd]
        mask = self._attention_mask(B, T, past, full_valid, x.device)
        is_causal = mask is None and past == 0 and T > 1
        dropout = cfg.attention_dropout if self.training else 0.0
        eps = cfg.rms_norm_eps
        qk_norm = hasattr(layers[0].self_attn, "q_norm")  # Qwen3 QK-norm (per head, before RoPE)
        silu = cfg.hidden_act == "silu"
        if use_cache:
            cache = self._reserve_cache(cache, len(layers), B, 2 * Hkv, past + T, hd, x)
        tables = {cos.dtype: (cos, sin)}  # the RoPE tables per compute dtype (bf16 under autocast)

        def block(x, i, layer, w_qkv, b_qkv, w_gu, b_gu):
            """Decoder layer ``i`` on ``x [B, T, D]`` (writes its keys/values into the cache)."""
            attn, mlp = layer.self_attn, layer.mlp
            h = torch.rms_norm(x, (D,), layer.input_layernorm.weight, eps)
            qkv = F.linear(h, w_qkv, b_qkv).view(B, T, H + 2 * Hkv, hd)
            if qk_norm:
                q, k, v = qkv.split((H, Hkv, Hkv), dim=2)
                qkv = torch.cat((attn.q_norm(q), attn.k_norm(k), v), dim=2)
            if qkv.dtype not in tables:
                tables[qkv.dtype] = (cos.to(qkv.dtype), sin.to(qkv.dtype))
            cos_, sin_ = tables[qkv.dtype]
            qkv = torch.addcmul(qkv * cos_, qkv.roll(hd // 2, -1), sin_).transpose(1, 2)  # [B, H+2Hkv, T, hd]
            if use_cache:
                q = qkv[:, :H]
                buf = cache["layers"][i]  # [B, 2 Hkv, capacity, hd]
                buf[:, :, past : past + T] = qkv[:, H:]
                k, v = buf[:, :Hkv, : past + T], buf[:, Hkv:, : past + T]
                if k.dtype != q.dtype:
                    k, v = k.to(q.dtype), v.to(q.dtype)
            else:  # split (not slices): its backward is one concatenation
                q, k, v = qkv.split((H, Hkv, Hkv), dim=1)
            o = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                dropout_p=dropout,
                is_causal=is_causal,
                scale=scale,
                enable_gqa=Hkv != H,
            )
            o = o.transpose(1, 2).reshape(B, T, H * hd)
            x = x + F.linear(o, attn.o_proj.weight, attn.o_proj.bias)
            h = torch.rms_norm(x, (D,), layer.post_attention_layernorm.weight, eps)
            if silu and w_gu is None:  # training: two matmuls, no concatenation in the backward
                gate = F.linear(h, mlp.gate_proj.weight, mlp.gate_proj.bias)
                act = F.silu(gate) * F.linear(h, mlp.up_proj.weight, mlp.up_proj.bias)
            elif silu:
                act = swiglu_linear(h, w_gu, b_gu)
            else:
                gate, up = F.linear(h, w_gu, b_gu).chunk(2, dim=-1)
                act = mlp.act_fn(gate) * up
            x = x + F.linear(act, mlp.down_proj.weight, mlp.down_proj.bias)
            return x

        # Gradient checkpointing: each layer's activations are recomputed in the backward (training
        # forwards with autograd on only; decoding with the cache runs the layers as usual).
        recompute = self.gradient_checkpointing and self.training and not use_cache
        recompute = recompute and torch.is_grad_enabled()
        for i, (layer, weights) in enumerate(zip(layers, self._fused_weights())):
            if recompute:
                x = checkpoint(block, x, i, layer, *weights, use_reentrant=False)
            else:
                x = block(x, i, layer, *weights)
        return (x, cache) if use_cache else x

    @staticmethod
    def _reserve_cache(cache, num_layers, B, heads, needed, hd, like) -> dict[str, Any]:
        """Return ``cache`` whose ``layers`` list holds one key|value buffer ``[B, heads, capacity, hd]``
        per layer (``heads = 2 * Hkv``: keys then values), with room for ``needed`` tokens.

        Capacity grows by doubling (amortised O(1) per decoded token, no per-step concatenation).
        """
        if cache is None:
            cache = {"fast": True, "layers": None}
        layers = cache["layers"]
        if layers is not None and layers[0].shape[0] != B:
            raise ValueError(f"The cache holds {layers[0].shape[0]} sequences but this call has B={B}.")
        if layers is None or layers[0].shape[2] < needed:
            capacity = max(64, needed, 2 * (layers[0].shape[2] if layers is not None else 0))
            autocast = torch.is_autocast_enabled(like.device.type)
            dtype = torch.get_autocast_dtype(like.device.type) if autocast else like.dtype
            with torch.inference_mode(False):  # normal tensors: usable in and out of inference_mode
                new = [
                    torch.zeros(B, heads, capacity, hd, dtype=dtype, device=like.device)
                    for _ in range(num_layers)
                ]
            if layers is not None:
                for buf, old in zip(new, layers):
                    buf[:, :, : old.shape[2]] = old
            cache["layers"] = new
        return cache
