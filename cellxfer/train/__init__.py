"""Training counters: the paper's regimes (supervised, synthetic, finetune, dual, DACS+CutMix).

Entry point: :func:`cellxfer.train.counter.train_counter` over a :class:`cellxfer.train.counter.TrainConfig`.
"""
