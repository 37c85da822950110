"""Write ``example_workflows/*.json`` from compact descriptions, with widget orders and
socket types taken from a running host's ``/object_info`` (a developer tool).

    COMFYUI_PATH=/path/to/ComfyUI /path/to/comfy-python tools/make_example_workflows.py

Each workflow uses core nodes and this pack's (the pose-from-DWPose ones also
comfyui_controlnet_aux's DWPose Estimator, whose definition is recorded in
tests/host/external_nodes.json), and starts with a note naming the models and images it
expects. The host tests validate the written files against the test hosts.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "host")]

from host_server import get_json, running_server  # noqa: E402
from host_support import find_host  # noqa: E402
from workflow_check import (  # noqa: E402
    FRONTEND_ONLY_NODES,
    combo_options,
    input_specs,
    is_widget,
    widget_slots,
    with_external_nodes,
)

CHECKPOINT = {"sd15": "v1-5-pruned-emaonly.safetensors", "sdxl": "sd_xl_base_1.0.safetensors"}
SIZE = {"sd15": 512, "sdxl": 1024}
HEADS_NOTE = ("Readout heads are downloaded into models/readout_heads on first use (or put the files there "
              "yourself: see the pack's README).")


def node(key: str, node_type: str, /, **widgets) -> dict:
    return {"key": key, "type": node_type, "widgets": widgets}


def note(text: str) -> dict:
    return {"key": "note", "type": "Note", "text": text}


def text_to_image(family: str, prompt: str) -> list[dict]:
    return [
        node("ckpt", "CheckpointLoaderSimple", ckpt_name=CHECKPOINT[family]),
        node("pos", "CLIPTextEncode", text=prompt),
        node("neg", "CLIPTextEncode", text="blurry, low quality"),
        node("empty", "EmptyLatentImage", width=SIZE[family], height=SIZE[family], batch_size=1),
    ]


CLIP_LINKS = [("ckpt", 1, "pos", "clip"), ("ckpt", 1, "neg", "clip")]


def spatial(family: str, control: str) -> dict:
    head = f"readout_{'sdv15' if family == 'sd15' else 'sdxl'}_spatial_{control}.pt"
    nodes = [
        note(f"Readout Guidance: {control} control ({family.upper()}).\nModels: {CHECKPOINT[family]} in "
             f"models/checkpoints. {HEADS_NOTE}\nLoad a {control} image (as comfyui_controlnet_aux's "
             f"preprocessors make it: {'OpenPose skeleton on black' if control == 'pose' else 'MiDaS depth, near = bright' if control == 'depth' else 'HED soft edges on black'}) "
             "in Load Image. Guidance acts on the first half of the steps; the loss shows under the sampler."),
        *text_to_image(family, "a photo of a person in a park" if control == "pose" else "a cozy living room"),
        node("head", "ReadoutGuidance_LoadHead", head_name=head),
        node("control", "LoadImage", image=f"{control}_control.png"),
        node("target", "ReadoutGuidance_SpatialTarget", weight=0.5),
        node("sampler", "ReadoutGuidance_KSampler", seed=0, steps=30, cfg=7.5, sampler_name="ddim",
             scheduler="ddim_uniform", update_rule="official", guidance_weight=0.02, start_percent=0.0,
             end_percent=0.5, gradient_checkpointing=family == "sdxl", denoise=1.0),
        node("decode", "VAEDecode"),
        node("preview", "ReadoutGuidance_Preview", percent=0.95),
        node("save", "SaveImage", filename_prefix=f"readout_{control}"),
    ]
    links = [*CLIP_LINKS, ("head", 0, "target", "head"), ("control", 0, "target", "image"),
             ("ckpt", 0, "sampler", "model"), ("pos", 0, "sampler", "positive"), ("neg", 0, "sampler", "negative"),
             ("empty", 0, "sampler", "latent_image"), ("target", 0, "sampler", "terms"),
             ("sampler", 0, "decode", "samples"), ("ckpt", 2, "decode", "vae"), ("decode", 0, "save", "images"),
             ("ckpt", 0, "preview", "model"), ("head", 0, "preview", "head"), ("sampler", 0, "preview", "latent"),
             ("neg", 0, "preview", "conditioning")]
    return {"nodes": nodes, "links": links}


def controlnet_refine() -> dict:
    family = "sd15"
    nodes = [
        note(f"ControlNet + readout refinement (SD1.5).\nModels: {CHECKPOINT[family]} in models/checkpoints, "
             "control_v11f1p_sd15_depth.pth in models/controlnet. " + HEADS_NOTE + "\nThe ControlNet sets the layout; "
             "the depth head refines the result towards the same depth image."),
        *text_to_image(family, "a cozy living room"),
        node("control", "LoadImage", image="depth_control.png"),
        node("cnet", "ControlNetLoader", control_net_name="control_v11f1p_sd15_depth.pth"),
        node("apply_cnet", "ControlNetApplyAdvanced", strength=0.6, start_percent=0.0, end_percent=1.0),
        node("head", "ReadoutGuidance_LoadHead", head_name="readout_sdv15_spatial_depth.pt"),
        node("target", "ReadoutGuidance_SpatialTarget", weight=0.5),
        node("guide", "ReadoutGuidance_Apply", update_rule="official", weight=0.02, start_percent=0.0,
             end_percent=0.5, gradient_checkpointing=False, recurrent_steps=1),
        node("ksampler", "KSampler", seed=0, steps=30, cfg=7.5, sampler_name="ddim", scheduler="ddim_uniform",
             denoise=1.0),
        node("decode", "VAEDecode"),
        node("save", "SaveImage", filename_prefix="readout_controlnet"),
    ]
    links = [*CLIP_LINKS, ("pos", 0, "apply_cnet", "positive"), ("neg", 0, "apply_cnet", "negative"),
             ("cnet", 0, "apply_cnet", "control_net"), ("control", 0, "apply_cnet", "image"),
             ("ckpt", 2, "apply_cnet", "vae"),
             ("head", 0, "target", "head"), ("control", 0, "target", "image"),
             ("ckpt", 0, "guide", "model"), ("target", 0, "guide", "terms"),
             ("guide", 0, "ksampler", "model"), ("apply_cnet", 0, "ksampler", "positive"),
             ("apply_cnet", 1, "ksampler", "negative"), ("empty", 0, "ksampler", "latent_image"),
             ("ksampler", 0, "decode", "samples"), ("ckpt", 2, "decode", "vae"), ("decode", 0, "save", "images")]
    return {"nodes": nodes, "links": links}


def reference_sampler(**widgets) -> dict:
    values = dict(preset="custom", seed=0, steps=50, cfg=7.5, reference_cfg=7.5, sampler_name="ddim",
                  scheduler="ddim_uniform", edit_start="reference noise (drag)", variations=1, variation_seed=1,
                  update_rule="official", guidance_weight=0.02, start_percent=0.0, end_percent=0.5,
                  gradient_checkpointing=False, recurrent_steps=1)
    values.update(widgets)
    return node("sampler", "ReadoutGuidance_ReferenceSampler", **values)


def decode_both(prefix: str) -> tuple[list[dict], list[tuple]]:
    nodes = [node("decode_edit", "VAEDecode"), node("save_edit", "SaveImage", filename_prefix=prefix),
             node("decode_ref", "VAEDecode"), node("save_ref", "SaveImage", filename_prefix=prefix + "_reference")]
    links = [("sampler", 0, "decode_edit", "samples"), ("ckpt", 2, "decode_edit", "vae"),
             ("decode_edit", 0, "save_edit", "images"), ("sampler", 1, "decode_ref", "samples"),
             ("ckpt", 2, "decode_ref", "vae"), ("decode_ref", 0, "save_ref", "images")]
    return nodes, links


def drag_heads(prefix: str) -> list[dict]:
    return [node("corr", "ReadoutGuidance_LoadHead", head_name=f"readout_{prefix}_drag_correspondence.pt"),
            node("app", "ReadoutGuidance_LoadHead", head_name=f"readout_{prefix}_drag_appearance.pt")]


DRAG_POINTS_EXAMPLE = {"sdxl": '{"width": 1024, "height": 1024, "pairs": [{"handle": [400, 520], "target": [600, 520]}]}',
                       "sd15": '{"width": 512, "height": 512, "pairs": [{"handle": [200, 260], "target": [300, 260]}]}'}


def generation(family: str, prompt: str) -> tuple[list[dict], list[tuple]]:
    """Text-to-image with a DDIM KSampler (``gen``) and its decoded image (``gen_decode``)."""
    nodes = [*text_to_image(family, prompt),
             node("gen", "KSampler", seed=0, steps=50, cfg=7.5, sampler_name="ddim", scheduler="ddim_uniform",
                  denoise=1.0),
             node("gen_decode", "VAEDecode")]
    links = [*CLIP_LINKS, ("ckpt", 0, "gen", "model"), ("pos", 0, "gen", "positive"), ("neg", 0, "gen", "negative"),
             ("empty", 0, "gen", "latent_image"), ("gen", 0, "gen_decode", "samples"), ("ckpt", 2, "gen_decode", "vae")]
    return nodes, links


def drag_generated() -> dict:
    family = "sdxl"
    end_nodes, end_links = decode_both("readout_drag")
    gen_nodes, gen_links = generation(family, "a red apple on a wooden table")
    nodes = [
        note(f"Drag a generated image (SDXL, released preset).\nModels: {CHECKPOINT[family]}. {HEADS_NOTE}\n"
             "1. Queue once: the first sampler makes the image. 2. Drag points on the Drag Points canvas "
             "(press on the content, drag to where it should go). 3. Queue again: the reference sampler regenerates "
             "the image from the same seed and moves the content."),
        *gen_nodes,
        node("points", "ReadoutGuidance_DragPoints", points=DRAG_POINTS_EXAMPLE[family]),
        *drag_heads("sdxl"),
        node("drag", "ReadoutGuidance_DragGuidance", correspondence_weight=1.0, appearance_weight=1.0),
        reference_sampler(preset="drag: generated image (SDXL)", gradient_checkpointing=True),
        *end_nodes,
    ]
    links = [*gen_links, ("gen_decode", 0, "points", "image"), ("corr", 0, "drag", "correspondence_head"),
             ("app", 0, "drag", "appearance_head"), ("points", 0, "drag", "points"),
             ("ckpt", 0, "sampler", "model"), ("pos", 0, "sampler", "positive"), ("neg", 0, "sampler", "negative"),
             ("empty", 0, "sampler", "latent_image"), ("drag", 0, "sampler", "terms"), *end_links]
    return {"nodes": nodes, "links": links}


def drag_real() -> dict:
    family = "sd15"
    end_nodes, end_links = decode_both("readout_drag_real")
    nodes = [
        note(f"Drag a real image (SD1.5, released preset).\nModels: {CHECKPOINT[family]}. {HEADS_NOTE}\n"
             "Load a 512×512 photo, describe it in the prompt, drag points on the canvas and queue. Invert Image "
             "finds its noise; the reference sampler reconstructs it (CFG 1.0) and edits it (CFG 3.5). Keep steps "
             "and scheduler equal in both nodes."),
        node("ckpt", "CheckpointLoaderSimple", ckpt_name=CHECKPOINT[family]),
        node("pos", "CLIPTextEncode", text="a photo of a cat sitting on a sofa"),
        node("neg", "CLIPTextEncode", text=""),
        node("photo", "LoadImage", image="example.png"),
        node("encode", "VAEEncode"),
        node("invert", "ReadoutGuidance_InvertImage", steps=50, cfg=1.0, scheduler="ddim_uniform", refine=2),
        node("points", "ReadoutGuidance_DragPoints", points=DRAG_POINTS_EXAMPLE[family]),
        *drag_heads("sdv15"),
        node("drag", "ReadoutGuidance_DragGuidance", correspondence_weight=1.0, appearance_weight=1.0),
        reference_sampler(preset="drag: real image (SD1.5)", cfg=3.5, reference_cfg=1.0),
        *end_nodes,
    ]
    links = [*CLIP_LINKS, ("photo", 0, "encode", "pixels"), ("ckpt", 2, "encode", "vae"),
             ("ckpt", 0, "invert", "model"), ("pos", 0, "invert", "positive"), ("encode", 0, "invert", "latent"),
             ("photo", 0, "points", "image"), ("corr", 0, "drag", "correspondence_head"),
             ("app", 0, "drag", "appearance_head"), ("points", 0, "drag", "points"),
             ("ckpt", 0, "sampler", "model"), ("pos", 0, "sampler", "positive"), ("neg", 0, "sampler", "negative"),
             ("invert", 0, "sampler", "latent_image"), ("drag", 0, "sampler", "terms"), *end_links]
    return {"nodes": nodes, "links": links}


def appearance(identity: bool) -> dict:
    family = "sdxl" if not identity else "sd15"
    prefix = "sdxl" if family == "sdxl" else "sdv15"
    end_nodes, end_links = decode_both("readout_identity" if identity else "readout_variations")
    if identity:
        term = node("term", "ReadoutGuidance_IdentityReference", weight=1.0, face_box="160, 60, 352, 280")
        text = ("Identity-consistent generation (SD1.5).\nModels: " + CHECKPOINT[family] + ". " + HEADS_NOTE +
                "\nThe authors released no identity head: train one with the pack's trainer on face crops, or use the "
                "appearance head (as here; a note under the node says so). face_box is the face in the reference, "
                "in pixels.")
        prompt = "portrait photo of a woman with red hair, studio light"
    else:
        term = node("term", "ReadoutGuidance_AppearanceReference", weight=1.0)
        text = ("Appearance-preserving variations (SDXL).\nModels: " + CHECKPOINT[family] + ". " + HEADS_NOTE +
                "\nThe reference is generated from `seed`; four variations start from `variation_seed` and keep its "
                "look. Weight 0.2–0.5 shares colours and texture; 1–3 the object itself.")
        prompt = "a ceramic teapot with blue flowers"
    nodes = [
        note(text), *text_to_image(family, prompt),
        node("head", "ReadoutGuidance_LoadHead", head_name=f"readout_{prefix}_drag_appearance.pt"),
        term,
        reference_sampler(edit_start="new noise (variations)", variations=4 if not identity else 2,
                          gradient_checkpointing=family == "sdxl", preset="appearance variations"),
        *end_nodes,
    ]
    links = [*CLIP_LINKS, ("head", 0, "term", "head"), ("ckpt", 0, "sampler", "model"),
             ("pos", 0, "sampler", "positive"), ("neg", 0, "sampler", "negative"),
             ("empty", 0, "sampler", "latent_image"), ("term", 0, "sampler", "terms"), *end_links]
    return {"nodes": nodes, "links": links}


def pose_edit_generated() -> dict:
    family = "sd15"
    end_nodes, end_links = decode_both("readout_pose_edit")
    gen_nodes, gen_links = generation(family, "a photo of a dancer in a red dress on a beach")
    nodes = [
        note(f"Pose edit of a generated image (SD1.5).\nModels: {CHECKPOINT[family]}. {HEADS_NOTE}\n"
             "1. Queue once: the KSampler makes the image and Readout Pose reads its pose with the keypoint head; "
             "the Pose Keypoints canvas shows the skeleton over the image. 2. Drag joints on the canvas (Delete hides "
             "the selected joint: it is left free; Ctrl+Z undoes); the edited pose goes into pose_text. 3. Queue "
             "again: the reference sampler regenerates the image from the same seed, guided to the new pose while "
             "the appearance term keeps its colours. With pose_text empty the read pose itself is the target."),
        *gen_nodes,
        node("gen_preview", "PreviewImage"),
        node("blank", "CLIPTextEncode", text=""),
        node("pose_head", "ReadoutGuidance_LoadHead", head_name="readout_sdv15_pose_keypoint.pt"),
        node("read", "ReadoutGuidance_ReadoutPose", threshold=0.1, percent=1.0),
        node("skeleton", "PreviewImage"),
        node("app", "ReadoutGuidance_LoadHead", head_name="readout_sdv15_drag_appearance.pt"),
        node("look", "ReadoutGuidance_AppearanceReference", weight=0.3),
        node("pose", "ReadoutGuidance_PoseKeypoints", weight=1.0, pose_text=""),
        reference_sampler(),
        *end_nodes,
    ]
    links = [*gen_links, ("ckpt", 1, "blank", "clip"), ("gen_decode", 0, "gen_preview", "images"),
             ("ckpt", 0, "read", "model"), ("pose_head", 0, "read", "head"), ("gen", 0, "read", "latent"),
             ("blank", 0, "read", "conditioning"), ("read", 1, "skeleton", "images"), ("app", 0, "look", "head"),
             ("pose_head", 0, "pose", "head"), ("read", 0, "pose", "pose_keypoint"), ("look", 0, "pose", "terms"),
             ("gen_decode", 0, "pose", "image"),
             ("ckpt", 0, "sampler", "model"), ("pos", 0, "sampler", "positive"), ("neg", 0, "sampler", "negative"),
             ("empty", 0, "sampler", "latent_image"), ("pose", 0, "sampler", "terms"), *end_links]
    return {"nodes": nodes, "links": links}


def pose_from_dwpose(family: str) -> dict:
    prefix = "sdv15" if family == "sd15" else "sdxl"
    nodes = [
        note(f"Pose from DWPose keypoints ({family.upper()}).\nModels: {CHECKPOINT[family]} in models/checkpoints. "
             f"{HEADS_NOTE}\nNeeds comfyui_controlnet_aux (DWPose Estimator; it downloads its own models). Load a "
             "photo of a person: DWPose reads the pose, Pose Keypoints makes it the keypoint head's target, and the "
             "generation takes that pose (no ControlNet). Joints DWPose did not find are left free. To change the "
             "pose, queue once and drag joints on the Pose Keypoints canvas."),
        *text_to_image(family, "a photo of an astronaut on the moon, full body"),
        node("photo", "LoadImage", image="pose_person.png"),
        node("dwpose", "DWPreprocessor", detect_hand="disable", detect_body="enable", detect_face="disable",
             resolution=SIZE[family]),
        node("skeleton", "PreviewImage"),
        node("head", "ReadoutGuidance_LoadHead", head_name=f"readout_{prefix}_pose_keypoint.pt"),
        node("pose", "ReadoutGuidance_PoseKeypoints", weight=1.0, pose_text=""),
        node("sampler", "ReadoutGuidance_KSampler", seed=0, steps=30, cfg=7.5, sampler_name="ddim",
             scheduler="ddim_uniform", update_rule="official", guidance_weight=0.02, start_percent=0.0,
             end_percent=0.5, gradient_checkpointing=family == "sdxl", denoise=1.0),
        node("decode", "VAEDecode"),
        node("save", "SaveImage", filename_prefix="readout_pose_keypoints"),
    ]
    links = [*CLIP_LINKS, ("photo", 0, "dwpose", "image"), ("dwpose", 0, "skeleton", "images"),
             ("head", 0, "pose", "head"), ("dwpose", 1, "pose", "pose_keypoint"), ("photo", 0, "pose", "image"),
             ("ckpt", 0, "sampler", "model"), ("pos", 0, "sampler", "positive"), ("neg", 0, "sampler", "negative"),
             ("empty", 0, "sampler", "latent_image"), ("pose", 0, "sampler", "terms"),
             ("sampler", 0, "decode", "samples"), ("ckpt", 2, "decode", "vae"), ("decode", 0, "save", "images")]
    return {"nodes": nodes, "links": links}


def train_head() -> dict:
    family = "sd15"
    nodes = [
        note("Train your own readout head (SD1.5), then use it at once.\nModels: " + CHECKPOINT[family] +
             " in models/checkpoints.\nPut a dataset folder named readout_dataset in ComfyUI's input folder: "
             "images/NAME.png with controls/NAME.png (same names; any control: depth, segmentation, normals…), "
             "about 100 pairs. Training saves models/readout_heads/my_depth.safetensors; interrupt any time and "
             "queue again to resume. The trained head then guides a generation towards target.png."),
        *text_to_image(family, "a cozy living room"),
        node("empty_prompt", "CLIPTextEncode", text=""),
        node("train", "ReadoutGuidance_TrainHead", kind="spatial", dataset="readout_dataset",
             head_name="my_depth.safetensors", control_type="depth", sparse_loss="auto", resolution=512, steps=0,
             batch_size=0, learning_rate=0.0, seed=0, triplets=100, checkpoint_every=500, resume=True,
             cache_features=True),
        node("control", "LoadImage", image="target.png"),
        node("target", "ReadoutGuidance_SpatialTarget", weight=0.5),
        node("sampler", "ReadoutGuidance_KSampler", seed=0, steps=30, cfg=7.5, sampler_name="ddim",
             scheduler="ddim_uniform", update_rule="official", guidance_weight=0.02, start_percent=0.0,
             end_percent=0.5, gradient_checkpointing=False, denoise=1.0),
        node("decode", "VAEDecode"),
        node("save", "SaveImage", filename_prefix="readout_trained_head"),
    ]
    links = [*CLIP_LINKS, ("ckpt", 1, "empty_prompt", "clip"), ("ckpt", 0, "train", "model"),
             ("ckpt", 2, "train", "vae"), ("empty_prompt", 0, "train", "empty_prompt"),
             ("train", 0, "target", "head"), ("control", 0, "target", "image"),
             ("ckpt", 0, "sampler", "model"), ("pos", 0, "sampler", "positive"), ("neg", 0, "sampler", "negative"),
             ("empty", 0, "sampler", "latent_image"), ("target", 0, "sampler", "terms"),
             ("sampler", 0, "decode", "samples"), ("ckpt", 2, "decode", "vae"), ("decode", 0, "save", "images")]
    return {"nodes": nodes, "links": links}


WORKFLOWS = {
    **{f"{control}_control_{family}": (lambda f=family, c=control: spatial(f, c))
       for family in ("sd15", "sdxl") for control in ("pose", "depth", "edge")},
    "controlnet_depth_refined_sd15": controlnet_refine,
    "drag_generated_image_sdxl": drag_generated,
    "drag_real_image_sd15": drag_real,
    "appearance_variations_sdxl": lambda: appearance(identity=False),
    "identity_reference_sd15": lambda: appearance(identity=True),
    "train_depth_head_sd15": train_head,
    "pose_edit_generated_image_sd15": pose_edit_generated,
    "pose_from_dwpose_sd15": lambda: pose_from_dwpose("sd15"),
    "pose_from_dwpose_sdxl": lambda: pose_from_dwpose("sdxl"),
}


def build(spec: dict, object_info: dict) -> dict:
    """The frontend's workflow JSON for ``spec``."""
    ids = {item["key"]: index + 1 for index, item in enumerate(spec["nodes"])}
    ui_nodes, ui_links = [], []
    by_key = {}
    for order, item in enumerate(spec["nodes"]):
        position = [40 + 360 * (order // 4), 40 + 260 * (order % 4)]
        if item["type"] in FRONTEND_ONLY_NODES:
            by_key[item["key"]] = {"id": ids[item["key"]], "type": "Note", "pos": position, "size": [340, 220],
                                   "flags": {}, "order": order, "mode": 0, "inputs": [], "outputs": [],
                                   "properties": {}, "widgets_values": [item["text"]], "color": "#432",
                                   "bgcolor": "#653"}
            ui_nodes.append(by_key[item["key"]])
            continue
        info = object_info[item["type"]]
        unknown = set(item["widgets"]) - {name for name, *_ in widget_slots(info)}
        if unknown:
            raise SystemExit(f"{item['type']} has no widgets {sorted(unknown)}")
        values = []
        for name, kind, options, is_control in widget_slots(info):
            if is_control:
                values.append("fixed")
            elif name in item["widgets"]:
                values.append(item["widgets"][name])
            elif "default" in options:
                values.append(options["default"])
            else:
                values.append(combo_options(kind, options)[0])
        connected = {to_input for _, _, to_key, to_input in spec["links"] if to_key == item["key"]}
        sockets = [{"name": name, "type": kind, "link": None} for name, kind, _ in input_specs(info)
                   if not is_widget(kind) and (name in info["input"].get("required", {}) or name in connected)]
        outputs = [{"name": name, "type": kind, "links": [], "slot_index": slot}
                   for slot, (kind, name) in enumerate(zip(info["output"], info["output_name"]))]
        by_key[item["key"]] = {"id": ids[item["key"]], "type": item["type"], "pos": position, "size": [320, 200],
                               "flags": {}, "order": order, "mode": 0, "inputs": sockets, "outputs": outputs,
                               "properties": {"Node name for S&R": item["type"]}, "widgets_values": values}
        ui_nodes.append(by_key[item["key"]])
    for link_id, (from_key, slot, to_key, to_input) in enumerate(spec["links"], start=1):
        source, target = by_key[from_key], by_key[to_key]
        socket_index = next(i for i, s in enumerate(target["inputs"]) if s["name"] == to_input)
        link_type = source["outputs"][slot]["type"]
        target["inputs"][socket_index]["link"] = link_id
        source["outputs"][slot]["links"].append(link_id)
        ui_links.append([link_id, source["id"], slot, target["id"], socket_index, link_type])
    return {"last_node_id": len(ui_nodes), "last_link_id": len(ui_links), "nodes": ui_nodes, "links": ui_links,
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


def main() -> int:
    host, sentence = find_host()
    if host is None:
        print(f"error: {sentence}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as base, running_server(host, Path(base)) as url:
        object_info = with_external_nodes(get_json(f"{url}/object_info"))
    out = REPO / "example_workflows"
    for name, make in WORKFLOWS.items():
        (out / f"{name}.json").write_text(json.dumps(build(make(), object_info), indent=1) + "\n")
        print(f"wrote example_workflows/{name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
