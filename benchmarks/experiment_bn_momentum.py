"""Experiment: same protocol as bench_quality (uniform_withCP, natural) but BatchNormalization momentum 0.9
(PyTorch/CAREamics' 0.1), to test whether the lagging moving statistics explain the unstable eval PSNR."""
import os, sys, time, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

sys.path.append('/work/main/benchmarks')
import quality_data as qd
import keras
from n2v_tf import N2V, N2VConfig, psnr
keras.utils.set_random_seed(0)
ds = qd.load('natural')
kw = qd.n2v_config_kwargs('uniform_withCP', 10, 100)
config = N2VConfig(ds['X_train'], **kw)
model = N2V(config, 'bn09_uniform_withCP_natural', basedir='/work/main/benchmarks/_runs/models', overwrite=True)
for layer in model.keras_model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = 0.9
t = time.perf_counter()
hist = model.train(ds['X_train'], ds['X_val'], verbose=2)
res = {'train_time_s': time.perf_counter() - t, 'val_loss': [float(v) for v in hist.history['val_loss']]}
for w in ('weights_best.h5', 'weights_last.h5'):
    model.load_weights(w)
    res[w] = [psnr(c, model.predict(n, 'YX'), 255) for c, n in zip(ds['test_clean'], ds['test_noisy'])]
print(json.dumps(res))
json.dump(res, open('/work/main/benchmarks/_runs/experiment_bn_momentum_0.9_natural.json', 'w'))
