"""Speed-ups of transformers' SAM vision attention, the same functions up to rounding.

* :func:`use_device_rel_pos` -- the relative-position indices made on the device, once;
* :func:`use_fast_rel_pos_attention` -- SDPA without the materialised relative-position bias.

Both patch a loaded model's modules in place; :class:`~spatialpin_ros.perception.models_segment.
PromptableSegmenter` applies them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def use_device_rel_pos(model: torch.nn.Module) -> int:
    """Make SAM's vision attention build its relative-position indices on the device, once.

    transformers' ``SamVisionAttention.get_rel_pos`` makes them with CPU ``torch.arange`` in every
    attention layer on every call, and indexing the CUDA table with them is a synchronous
    host-to-device copy per layer (a stall of the launch queue, and no CUDA-graph capture). This
    replaces the method on each attention module by the same computation with the index tensor
    made on the table's device and cached per (query, key) size. Returns the number of modules
    patched.
    """
    cache: dict = {}

    def make(orig):
        def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
            max_rel_dist = int(2 * max(q_size, k_size) - 1)
            if rel_pos.shape[0] != max_rel_dist:
                return orig(q_size, k_size, rel_pos)     # interpolated tables: the original
            key = (q_size, k_size, rel_pos.device)
            idx = cache.get(key)
            if idx is None:
                q = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size,
                                                                                1.0)
                k = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size,
                                                                                1.0)
                idx = ((q - k) + (k_size - 1) * max(q_size / k_size, 1.0)).long()
                cache[key] = idx
            return rel_pos[idx]
        return get_rel_pos

    n = 0
    for mod in model.modules():
        if hasattr(mod, "get_rel_pos") and hasattr(mod, "rel_pos_h"):
            mod.get_rel_pos = make(mod.get_rel_pos)
            n += 1
    return n


def use_fast_rel_pos_attention(model: torch.nn.Module) -> int:
    """Replace the forward of SAM's SDPA vision attention by one that never materialises the
    relative-position bias.

    transformers builds the decomposed relative-position bias rel_h[i, j_h] + rel_w[i, j_w] as a
    full (batch, heads, N, N) tensor (N = 4096 in the global layers of a 1024 px image) and passes
    it to SDPA as an additive mask: writing and reading it took two thirds of SAM ViT-B's time.
    The same logits are a dot product in a larger space: with q' = [q / sqrt(d), rel_h(i),
    rel_w(i)] and k' = [k, onehot(j_h), onehot(j_w)], q'.k' = q.k / sqrt(d) + rel_h[i, j_h] +
    rel_w[i, j_w]. So this runs SDPA (flash/cuDNN, no mask) on head dimension d + h + w (value
    zero-padded, output sliced back). Same function, up to rounding. Only modules of transformers'
    ``SamVisionSdpaAttention`` layout (qkv, proj, rel_pos_h/w, num_attention_heads) are patched;
    returns their number.
    """
    n = 0
    for mod in model.modules():
        if type(mod).__name__ != "SamVisionSdpaAttention" or not all(
                hasattr(mod, a) for a in ("qkv", "proj", "num_attention_heads", "use_rel_pos")):
            continue

        def forward(hidden_states, output_attentions=False, _m=mod):
            B, H, W, _ = hidden_states.shape
            nh = _m.num_attention_heads
            qkv = _m.qkv(hidden_states).reshape(B, H * W, 3, nh, -1).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)                                  # (B, nh, N, d)
            d = q.shape[-1]
            if not _m.use_rel_pos:
                out = F.scaled_dot_product_attention(q, k, v)
            else:
                Rh = _m.get_rel_pos(H, H, _m.rel_pos_h).to(q.dtype)   # (H, H, d)
                Rw = _m.get_rel_pos(W, W, _m.rel_pos_w).to(q.dtype)   # (W, W, d)
                qr = q.reshape(B, nh, H, W, d)
                rel_h = torch.einsum("bnhwc,hkc->bnhwk", qr, Rh).reshape(B, nh, H * W, H)
                rel_w = torch.einsum("bnhwc,wkc->bnhwk", qr, Rw).reshape(B, nh, H * W, W)
                D = d + H + W
                Dp = -(-D // 8) * 8                                  # aligned head dimension
                eye_h = torch.eye(H, dtype=q.dtype, device=q.device)
                eye_w = torch.eye(W, dtype=q.dtype, device=q.device)
                oh = eye_h[:, None, :].expand(H, W, H).reshape(1, 1, H * W, H)
                ow = eye_w[None, :, :].expand(H, W, W).reshape(1, 1, H * W, W)
                qa = torch.cat([q * (d ** -0.5), rel_h, rel_w], dim=-1)
                ka = torch.cat([k, oh.expand(B, nh, -1, -1), ow.expand(B, nh, -1, -1)], dim=-1)
                if Dp > D:
                    qa = F.pad(qa, (0, Dp - D))
                    ka = F.pad(ka, (0, Dp - D))
                va = F.pad(v, (0, Dp - d))
                out = F.scaled_dot_product_attention(qa, ka, va, scale=1.0)[..., :d]
            out = out.reshape(B, nh, H, W, d).permute(0, 2, 3, 1, 4).reshape(B, H, W, nh * d)
            out = _m.proj(out)
            return out, None

        mod.forward = forward
        n += 1
    return n
