#!/usr/bin/env bash
# Developer tool: build the two ComfyUI hosts the host tests run against (0.3.64 and 0.8.0)
# from snapshots fetched with the search tool (github:Comfy-Org/ComfyUI, github:pollockjj/ComfyUI)
# into MIRROR, plus their virtual environments. Nothing of the hosts is committed.
# Override locations with HOSTS_DIR / VENV / VENV0364 env vars (defaults below).
set -euo pipefail
HOSTS_DIR=${HOSTS_DIR:-/work/hosts}
VENV=${VENV:-/work/hostenv}
VENV0364=${VENV0364:-/work/hostenv-0364}
MIRROR=${MIRROR:-/work/.mirror}
TORCH_PINS="torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0"

# 1. export HEAD trees blob-by-blob (git archive aborts: one LFS-sized blob is missing,
#    comfy/text_encoders/llama_tokenizer/tokenizer.json, in both mirrors; it is skipped)
export_tree() {
  local gd=$1 out=$2 line meta path mode rest type sha
  rm -rf "$out"; mkdir -p "$out"
  git --git-dir="$gd" ls-tree -r -z HEAD | while IFS= read -r -d '' line; do
    meta=${line%%$'\t'*}; path=${line#*$'\t'}
    mode=${meta%% *}; rest=${meta#* }; type=${rest%% *}; sha=${rest#* }
    [ "$type" = blob ] || { echo "SKIP $type $path"; continue; }
    mkdir -p "$out/$(dirname "$path")"
    if [ "$mode" = 120000 ]; then
      ln -s "$(git --git-dir="$gd" cat-file blob "$sha")" "$out/$path" || echo "MISSING $path"
    elif git --git-dir="$gd" cat-file blob "$sha" > "$out/$path" 2>/dev/null; then
      if [ "$mode" = 100755 ]; then chmod +x "$out/$path"; fi
    else
      rm -f "$out/$path"; echo "MISSING $path"
    fi
  done
  return 0
}
export_tree "$MIRROR/Comfy-Org+ComfyUI/repo"  "$HOSTS_DIR/ComfyUI-0.3.64"
export_tree "$MIRROR/pollockjj+ComfyUI/repo"  "$HOSTS_DIR/ComfyUI-0.8.0"
grep __version__ "$HOSTS_DIR"/ComfyUI-*/comfyui_version.py

# 2. main venv (0.8.0 UI pins); torch trio first so the /opt/wheels 2.13.0+cpu wheel is never chosen
python3.11 -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/pip" install $TORCH_PINS
"$VENV/bin/pip" install -r "$HOSTS_DIR/ComfyUI-0.8.0/requirements.txt" $TORCH_PINS
grep -v '^comfyui-' "$HOSTS_DIR/ComfyUI-0.3.64/requirements.txt" > /tmp/req0364-nofrontend.txt
"$VENV/bin/pip" install -r /tmp/req0364-nofrontend.txt $TORCH_PINS \
    safetensors numpy pillow pytest hypothesis diffusers
"$VENV/bin/pip" check

# 3. overlay venv for 0.3.64's server: only its 3 UI packages, everything else from $VENV
python3.11 -m venv "$VENV0364"
"$VENV0364/bin/pip" install --no-deps comfyui-frontend-package==1.27.10 \
    comfyui-workflow-templates==0.1.95 comfyui-embedded-docs==0.2.6
echo "import site; site.addsitedir('$VENV/lib/python3.11/site-packages')" \
    > "$VENV0364/lib/python3.11/site-packages/zz_hostenv_overlay.pth"

# 4. smoke checks
(cd "$HOSTS_DIR/ComfyUI-0.8.0"  && "$VENV/bin/python"     main.py --cpu --quick-test-for-ci)
(cd "$HOSTS_DIR/ComfyUI-0.3.64" && "$VENV0364/bin/python" main.py --cpu --quick-test-for-ci)
echo "setup ok"
