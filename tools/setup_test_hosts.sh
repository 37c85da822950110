#!/usr/bin/env bash
# Developer tool: build the three ComfyUI hosts the host tests run against (0.3.64, 0.8.0, 0.33.0)
# from snapshots fetched with the search tool (github:Comfy-Org/ComfyUI, github:pollockjj/ComfyUI,
# github:yzkee/ComfyUI) into MIRROR, their virtual environments, and one more environment that
# serves 0.33.0 with the newest frontend on the registry (browser tests). Nothing of the hosts is
# committed. Override locations with HOSTS_DIR / VENV / VENV0364 / VENV0330 / VENV_FE_LATEST.
#
#   host     python                      frontend
#   0.3.64   $VENV0364/bin/python        1.27.10 (its pin)
#   0.8.0    $VENV/bin/python            1.35.9  (its pin)
#   0.33.0   $VENV0330/bin/python        1.49.6  (its pin)
#   0.33.0   $VENV_FE_LATEST/bin/python  newest comfyui-frontend-package (FRONTEND_LATEST)
set -euo pipefail
HOSTS_DIR=${HOSTS_DIR:-/work/hosts}
VENV=${VENV:-/work/hostenv}
VENV0364=${VENV0364:-/work/hostenv-0364}
VENV0330=${VENV0330:-/work/hostenv-0330}
VENV_FE_LATEST=${VENV_FE_LATEST:-/work/hostenv-fe-latest}
FRONTEND_LATEST=${FRONTEND_LATEST:-1.58.1}
MIRROR=${MIRROR:-/work/.mirror}
TORCH_PINS="torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0"

# 1. export HEAD trees blob-by-blob (git archive aborts: LFS-sized tokenizer blobs of non-SD text
#    encoders are missing from the mirrors — llama_tokenizer/tokenizer.json in all three,
#    qwen35_tokenizer/vocab.json in 0.33.0; they are skipped)
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
export_tree "$MIRROR/yzkee+ComfyUI/repo"      "$HOSTS_DIR/ComfyUI-0.33.0"
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
overlay_venv() {  # overlay_venv NEW BASE: NEW sees BASE's packages behind its own
  python3.11 -m venv "$1"
  echo "import site; site.addsitedir('$2/lib/python3.11/site-packages')" \
      > "$1/lib/python3.11/site-packages/zz_hostenv_overlay.pth"
}
overlay_venv "$VENV0364" "$VENV"
"$VENV0364/bin/pip" install --no-deps comfyui-frontend-package==1.27.10 \
    comfyui-workflow-templates==0.1.95 comfyui-embedded-docs==0.2.6

# 4. overlay venv for 0.33.0: what its requirements add to $VENV (comfy-aimdo, comfy-kitchen,
#    blake3, simpleeval, PyOpenGL, comfy-angle and its UI packages); torch stays $VENV's
overlay_venv "$VENV0330" "$VENV"
grep -v '^torch' "$HOSTS_DIR/ComfyUI-0.33.0/requirements.txt" > /tmp/req0330-notorch.txt
"$VENV0330/bin/pip" install -r /tmp/req0330-notorch.txt $TORCH_PINS

# 5. 0.33.0 with the newest frontend: only the frontend package, on top of $VENV0330
overlay_venv "$VENV_FE_LATEST" "$VENV0330"
"$VENV_FE_LATEST/bin/pip" install --no-deps "comfyui-frontend-package==$FRONTEND_LATEST"

# 6. browser tests: Playwright's Python client (no browser download) and Debian's chromium
"$VENV/bin/pip" install playwright
command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; }

# 7. smoke checks
(cd "$HOSTS_DIR/ComfyUI-0.8.0"  && "$VENV/bin/python"     main.py --cpu --quick-test-for-ci)
(cd "$HOSTS_DIR/ComfyUI-0.3.64" && "$VENV0364/bin/python" main.py --cpu --quick-test-for-ci)
(cd "$HOSTS_DIR/ComfyUI-0.33.0" && "$VENV0330/bin/python" main.py --cpu --quick-test-for-ci)
(cd "$HOSTS_DIR/ComfyUI-0.33.0" && "$VENV_FE_LATEST/bin/python" main.py --cpu --quick-test-for-ci)
for venv in "$VENV0364" "$VENV" "$VENV0330" "$VENV_FE_LATEST"; do
  "$venv/bin/python" -c "import importlib.metadata as m; print('$venv', 'frontend', m.version('comfyui-frontend-package'))"
done
echo "setup ok"
