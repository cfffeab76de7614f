"""Hugging Face Space entry point: the BenthicNet app for one model repository.

The Space runs ``app.py`` with Gradio; set the model in the Space's settings (variable
``BENTHICNET_MODEL``, a Hub model id such as ``ORG/benthicnet-catami``) or edit ``MODEL`` below.
Locally: ``BENTHICNET_MODEL=runs/demo/finetune/final python spaces/app.py`` (or
``benthicnet-hf app --model ...``).
"""

import os

from benthicnet_hf.app import build_app

MODEL = os.environ.get("BENTHICNET_MODEL", "ORG/benthicnet-catami")

demo = build_app(MODEL, device=os.environ.get("BENTHICNET_DEVICE", "cpu"))

if __name__ == "__main__":
    demo.launch()
