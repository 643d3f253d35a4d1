"""Build tiny, randomly initialised perception models fully offline (a test helper).

Each builder writes a model and its processor with ``save_pretrained`` into a directory, as a
Hugging Face checkpoint would hold them, so that the code under test loads them exactly like the
real ones (``AutoConfig`` / ``Auto*`` model classes / ``AutoImageProcessor`` / ``AutoTokenizer``):

* :func:`build_tiny_depth` -- a Depth Anything (V2-style metric head, DINOv2 backbone of hidden
  size 32, 4 layers, 14 px patches) with the DPT image processor settings of
  ``depth-anything/Depth-Anything-V2-Metric-Indoor-*-hf`` but a 56 px input;
* :func:`build_tiny_owlv2` -- an OWLv2 detector (CLIP text and vision towers of hidden size 32,
  2 layers; 64 px input, 16 px patches: 16 candidate boxes) with a byte-level CLIP tokenizer of
  514 tokens (single bytes, bytes ending a word, then start/end of text, the end token highest as
  in CLIP, which OWLv2's text pooling relies on) and the OWLv2 image processor (pad to square,
  resize to 64 px);
* :func:`build_tiny_sam` -- a SAM (ViT of hidden size 32, 2 layers, one global-attention layer;
  64 px input, 16 px patches, so 4x4 image embeddings and 16x16 low-resolution masks) with the
  SAM image processor (longest side 64, padded to 64x64).

The weights are random: outputs have the right shapes, types and ranges but no meaning. Tests
that need detections use a box threshold of 0 (every candidate passes). Nothing is downloaded.

This is not a test module (pytest does not collect it); tests import from it.
"""

from __future__ import annotations

import math
from pathlib import Path

DEPTH_INPUT = 56     # pixels (a multiple of the 14 px patch)
OWL_INPUT = 64       # pixels, 16 px patches -> a 4x4 grid of candidate boxes
SAM_INPUT = 64       # pixels, 16 px patches -> 4x4 embeddings, 16x16 low-res masks


def build_tiny_depth(path: str | Path, seed: int = 0, max_depth: int = 20,
                     constant_depth: float | None = None) -> str:
    """A tiny metric Depth Anything + its DPT image processor in ``path``; returns ``str(path)``.

    ``constant_depth`` (metres, test-only hand-set weights): the head's last convolution gets
    zero weights and the bias that makes ``max_depth * sigmoid(bias)`` that depth, so the model
    predicts it at every pixel (a table seen by a camera looking straight down at it).
    """
    import torch
    from transformers import (DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config,
                              DPTImageProcessorPil)

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                            mlp_ratio=2, image_size=DEPTH_INPUT, patch_size=14,
                            out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
                            apply_layernorm=True)
    config = DepthAnythingConfig(backbone_config=backbone, patch_size=14,
                                 reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8,
                                 depth_estimation_type="metric", max_depth=max_depth)
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(config).eval()
    if constant_depth is not None:
        p = float(constant_depth) / max_depth
        if not 0 < p < 1:
            raise ValueError("constant_depth must be in (0, max_depth)")
        with torch.no_grad():
            model.head.conv3.weight.zero_()
            model.head.conv3.bias.fill_(math.log(p / (1 - p)))
    model.save_pretrained(path)
    # the settings of the Depth-Anything-V2 checkpoints, at a tiny input size
    DPTImageProcessorPil(size={"height": DEPTH_INPUT, "width": DEPTH_INPUT},
                         keep_aspect_ratio=True, ensure_multiple_of=14, resample=3,
                         do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                         image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                         do_pad=False).save_pretrained(path)
    return str(path)


def _clip_tokenizer():
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({ch + "</w>": len(alphabet) + i for i, ch in enumerate(alphabet)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)          # the highest id, as in CLIP
    return CLIPTokenizer(vocab=vocab, merges=[], pad_token="!", model_max_length=16)


def build_tiny_owlv2(path: str | Path, seed: int = 0, grid_boxes: bool = False) -> str:
    """A tiny OWLv2 + tokenizer + image processor in ``path``; returns ``str(path)``.

    ``grid_boxes`` (test-only hand-set weights): the box head's last layer is zeroed, so each of
    the 4x4 patches predicts OWL's box prior, a box of one grid cell around the cell's lower
    right corner (the random head saturates the sigmoid and gives degenerate boxes). Class
    scores stay random.
    """
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessorPil

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = _clip_tokenizer()
    config = Owlv2Config(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=OWL_INPUT, patch_size=16),
        projection_dim=32)
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(config).eval()
    if grid_boxes:
        with torch.no_grad():
            model.box_head.dense2.weight.zero_()
            model.box_head.dense2.bias.zero_()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    Owlv2ImageProcessorPil(size={"height": OWL_INPUT, "width": OWL_INPUT}).save_pretrained(path)
    return str(path)


def build_tiny_sam(path: str | Path, seed: int = 0, full_masks: bool = False) -> str:
    """A tiny SAM + its image processor in ``path``; returns ``str(path)``.

    ``full_masks`` (test-only hand-set weights): the mask decoder's last upscaling convolution
    outputs a constant 1 and the single-mask hypernetwork a constant 1, so every mask logit is
    positive: each box's mask is the whole image (then clipped to the box by the segmenter).
    """
    import torch
    from transformers import (SamConfig, SamImageProcessorPil, SamMaskDecoderConfig, SamModel,
                              SamPromptEncoderConfig, SamVisionConfig)

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vision = SamVisionConfig(hidden_size=32, output_channels=16, num_hidden_layers=2,
                             num_attention_heads=2, image_size=SAM_INPUT, patch_size=16,
                             window_size=2, global_attn_indexes=[1], mlp_dim=64,
                             num_pos_feats=8)
    prompt = SamPromptEncoderConfig(hidden_size=16, image_size=SAM_INPUT, patch_size=16,
                                    mask_input_channels=4, num_point_embeddings=4)
    decoder = SamMaskDecoderConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                   mlp_dim=32, iou_head_hidden_dim=16, num_multimask_outputs=3)
    config = SamConfig(vision_config=vision, prompt_encoder_config=prompt,
                       mask_decoder_config=decoder)
    torch.manual_seed(seed)
    model = SamModel(config).eval()
    if full_masks:
        dec = model.mask_decoder
        with torch.no_grad():
            dec.upscale_conv2.weight.zero_()
            dec.upscale_conv2.bias.fill_(1.0)
            last = dec.output_hypernetworks_mlps[0].proj_out
            last.weight.zero_()
            last.bias.fill_(1.0)
    model.save_pretrained(path)
    SamImageProcessorPil(size={"longest_edge": SAM_INPUT},
                         pad_size={"height": SAM_INPUT, "width": SAM_INPUT},
                         mask_size={"longest_edge": SAM_INPUT // 4},
                         mask_pad_size={"height": SAM_INPUT // 4, "width": SAM_INPUT // 4}
                         ).save_pretrained(path)
    return str(path)


def build_all(root: str | Path, seed: int = 0, hand_set: bool = False) -> dict[str, str]:
    """All three under ``root`` (subfolders depth/, owlv2/, sam/): {"depth": ..., ...}. With
    ``hand_set`` the detector predicts grid-cell boxes and SAM full masks (see the builders)."""
    root = Path(root)
    return {"depth": build_tiny_depth(root / "depth", seed),
            "detector": build_tiny_owlv2(root / "owlv2", seed, grid_boxes=hand_set),
            "sam": build_tiny_sam(root / "sam", seed, full_masks=hand_set)}


if __name__ == "__main__":  # python tiny_perception_models.py OUT_DIR
    import sys

    print(build_all(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tiny_perception_models"))
