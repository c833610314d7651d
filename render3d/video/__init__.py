"""Video generation: clip datasets, a causal video tokenizer and an action-conditioned world model.

```python
from render3d.video.clips import load_clips
from render3d.video.generate import load_video_model
clips = load_clips("runs/clips")                     # render3d video data default --out runs/clips
model = load_video_model("runs/video-world-model")   # render3d video train runs/clips --tokenizer TOK
video = model.generate(first[None], K[None], c2w[None])   # [1, T, 3, H, W] in [0, 1]
```

Modules: :mod:`~render3d.video.sources` (making clips), :mod:`~render3d.video.clips` (the clip
files), :mod:`~render3d.video.wavelet`, :mod:`~render3d.video.fsq` and
:mod:`~render3d.video.tokenizer` (the tokenizer), :mod:`~render3d.video.plucker` (camera
conditioning), :mod:`~render3d.video.world_model`, :mod:`~render3d.video.train` (both
trainers on the shared loop), :mod:`~render3d.video.generate`,
:mod:`~render3d.video.evaluate`, :mod:`~render3d.video.cli`.
"""
