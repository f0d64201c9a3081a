#!/usr/bin/env bash
# The image GAN experiments of BENCHMARKS.md ("Image GANs"): train each config, evaluate FD / KID /
# precision-recall with the domain features (EMA and online generators), write sample grids and a
# latent interpolation grid. Usage: bash experiments/gan_images.sh [ROOT]  (default runs/gan_images)
set -euxo pipefail
cd "$(dirname "$0")/.."
root=${1:-runs/gan_images}
run() {  # name, config, overrides...
  local name=$1 config=$2
  shift 2
  jaxgen train --config "experiments/$config.py" --workdir "$root/$name" --no-progress "$@"
  for params in ema online; do
    jaxgen eval --workdir "$root/$name" --metric fd,kid,pr --num 2500 --params $params \
      --json "$root/$name/eval_$params.json" --no-progress
    jaxgen sample --workdir "$root/$name" --num 64 --seed 0 --params $params --out "$root/$name/samples_$params.png"
  done
  jaxgen sample --workdir "$root/$name" --num 64 --interpolate 8 --seed 0 --out "$root/$name/interpolation.png"
}
run dcgan_digits dcgan_digits
run dcgan_shapes dcgan_shapes
run sngan_shapes sngan_shapes
run sngan_shapes_ttur sngan_shapes --config.optimizer.lr=1e-4 --config.d_optimizer.lr=4e-4
run stylegan_digits stylegan_digits
