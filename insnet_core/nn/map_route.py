"""The AE route for maps: structure -> 50 latents -> ONNX decoder -> ideal map -> instrument.

A route folder (``models/maps/<name>``, card kind ``ae-route``) holds the coder's ONNX
halves (``encoder.onnx``, ``decoder.onnx``), the latent heads (``heads.safetensors``) and a
card naming the predictor model whose backbone and DOS head feed the heads. For one
structure:

1. the predictor runs once: every member's per-element DOS and member 0's pooled backbone
   features (:func:`insnet_core.nn.model.pooled_features`);
2. the engine makes the 0 K ideal map P0 of the ensemble-mean DOS (the database's orders);
3. the ONNX encoder gives P0's latents z_P (brightened, max-normalised map in); each
   latent head, an MLP on [features, z_P], predicts the correction: z = z_P + head(x);
4. the ONNX decoder turns each head's z into a brightened map, which is unbrightened; the
   heads' mean is the map, their spread times a scale fitted on validation its errors;
5. the map is put on P0's absolute scale (equal integral over the ideal grid: barn/sr/meV
   per cell, as every other insnet output);
6. :func:`insnet_core.ideal_map.ideal_to_instrument` takes it to the instrument, the
   thermal change for T > 0 coming from the engine on the same DOS.

So the AE route is not cheaper than the partials route here (steps 2 and 6 run the
engine); it is the reference work's map route, kept selectable for comparison.
:func:`fit_route` trains the heads (minutes on a CPU once the inputs are computed).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from insnet_core import InputError
from insnet_core.nn.card import ModelFileError, read_json_card, write_json_card
from insnet_core.nn.latent_head import LatentMLP, fit_latent_head, predict_latents
from insnet_core.nn.mapdata import (MAP_SHAPE, ae_part, brighten, max_normalise, unbrighten)

__all__ = ["ROUTE_CARD_FORMAT", "MapRoute", "route_inputs", "fit_route",
           "route_maps", "write_pca_coder", "record_route_table"]

#: Format of an AE route card; a folder of another format is refused.
ROUTE_CARD_FORMAT = 1
_HEADS = "heads.safetensors"


def _ideal_settings(orders):
    from insnet_core.simulate import Settings
    return Settings.check("Ideal2D", temperature=0.0, orders=orders)


def _mean_ingredients(predictor, structure, raw):
    from insnet_core.nn.partials import ingredients_from_partials
    return ingredients_from_partials(structure.species, raw["elements"], raw["dos"].mean(axis=0),
                                     predictor.config.dos_width, fine=0.1)


def route_inputs(predictor, structures, raws, orders):
    """What the heads read, per structure: features, P0 (Spectrum) and the ingredients.

    Parameters
    ----------
    predictor : insnet_core.nn.predictor.Predictor
    structures : list of Structure
    raws : list of dict
        ``predictor.raw(structures, features=True)``.
    orders : int
        Phonon orders of P0 (the coder's training maps').

    Returns
    -------
    list of (ndarray (n_features,), Spectrum, IncoherentIngredients)
    """
    from insnet_core.simulate import simulate_ingredients
    settings = _ideal_settings(orders)
    out = []
    for structure, raw in zip(structures, raws):
        if raw.get("features") is None or raw.get("dos") is None:
            raise InputError(f"model {predictor.name!r} gives no DOS or no backbone features "
                             "for the AE route")
        ing = _mean_ingredients(predictor, structure, raw)
        out.append((raw["features"], simulate_ingredients(ing, settings).total, ing))
    return out


class MapRoute:
    """A loaded AE route folder.

    Parameters
    ----------
    folder : path
        ``models/maps/<name>`` with ``card.json``, ``encoder.onnx``, ``decoder.onnx`` and
        ``heads.safetensors``.
    threads : int, optional
        onnxruntime intra-op threads.
    """

    def __init__(self, folder, threads=None):
        from insnet_core.nn.autoencoder import map_grid
        from insnet_core.nn.onnx_export import OnnxHalf

        self.folder = Path(folder)
        path, card = read_json_card(self.folder, "map route")
        if card.get("format_version") != ROUTE_CARD_FORMAT or card.get("kind") != "ae-route":
            raise ModelFileError(f"{path}: not an AE route card of format {ROUTE_CARD_FORMAT} "
                                 f"(kind {card.get('kind')!r}, format "
                                 f"{card.get('format_version')!r})")
        if card.get("map_grid") != map_grid():
            raise ModelFileError(f"{path}: map_grid {card.get('map_grid')} is not this code's "
                                 f"ideal grid {map_grid()}")
        self.card = card
        self.name = card.get("name", self.folder.name)
        self.predictor_name = card["predictor"]
        self.orders = int(card["orders"])
        self.sigma_scale = float(card.get("sigma_scale", 1.0))
        self.sigma_floor = float(card.get("sigma_floor", 0.0))
        self.encoder = OnnxHalf(self.folder / "encoder.onnx", threads=threads)
        self.decoder = OnnxHalf(self.folder / "decoder.onnx", threads=threads)
        self.heads, self.scalers = _load_heads(self.folder / _HEADS, card["head"])

    # ------------------------------------------------------------------ maps
    def encode(self, maps):
        """Latents (n, k) of max-normalised maps (n, 300, 300), brightened here."""
        return self.encoder(brighten(np.asarray(maps, dtype=np.float32)))

    def latents(self, features, p0_latents):
        """Every head's latents, (n_heads, n, k)."""
        x = np.concatenate([np.atleast_2d(features), np.atleast_2d(p0_latents)], axis=1)
        return np.stack([predict_latents(head, sc, x) + p0_latents
                         for head, sc in zip(self.heads, self.scalers)])

    def decoded(self, features, p0_latents):
        """Every head's unbrightened map, (n_heads, n, 300, 300)."""
        z = self.latents(features, p0_latents)
        n_heads, n, k = z.shape
        return unbrighten(self.decoder(z.reshape(n_heads * n, k))).reshape(
            n_heads, n, *MAP_SHAPE)

    def maps(self, features, p0_maps):
        """Mean and calibrated error of the heads' maps, each (n, 300, 300).

        ``p0_maps``: the engine's 0 K maps of the predicted DOS (n, 300, 300), any scale.
        The maps are on the coder's scale (maximum about 1). Error:
        :func:`insnet_core.nn.evaluate.calibrated_sigma` of the heads' spread with the
        card's scale and floor (fitted on the validation maps by :func:`fit_route`).
        """
        from insnet_core.nn.evaluate import calibrated_sigma
        p0 = max_normalise(np.asarray(p0_maps, dtype=np.float32))
        decoded = self.decoded(features, self.encode(p0))
        n = decoded.shape[1]
        mean = decoded.mean(axis=0)
        spread = decoded.std(axis=0, ddof=1) if len(decoded) > 1 else np.zeros_like(mean)
        err = calibrated_sigma(spread.reshape(n, -1), mean.reshape(n, -1), self.sigma_scale,
                               self.sigma_floor)
        return mean, err.reshape(mean.shape)

    def ideal_map(self, structure, predictor, raw):
        """(ideal Spectrum at 0 K on P0's absolute scale, ingredients) of one structure."""
        features, p0, ing = route_inputs(predictor, [structure], [raw], self.orders)[0]
        mean, err = self.maps(features[None, :], p0.values[None])
        p0_sum = float(np.nansum(p0.values))
        scale = p0_sum / float(mean[0].sum()) if mean[0].sum() > 0 else 0.0
        meta = {**p0.metadata, "map_route": "ae", "map_route_model": self.name,
                "map_route_scale": "integral of the engine's 0 K map of the predicted DOS",
                "contribution": "total"}
        return p0.replace(values=mean[0] * scale, errors=err[0] * scale, metadata=meta), ing

    def simulate(self, structure, settings, predictor, raw):
        """SimulationResult (total only) of one structure on a map instrument."""
        from insnet_core.ideal_map import ideal_to_instrument, thermal_difference
        from insnet_core.simulate import SimulationResult

        if predictor.name != self.predictor_name:
            raise InputError(f"AE route {self.name!r} reads model {self.predictor_name!r}'s "
                             f"backbone; model {predictor.name!r} cannot feed it")
        if not settings.instrument.is_map:
            raise InputError(f"the AE route gives maps; {settings.instrument.name} is 1D "
                             "(use the partials route)")
        ideal, ing = self.ideal_map(structure, predictor, raw)
        # the orders of P0 for both temperatures (an automatic cut could differ between them)
        thermal = (thermal_difference(ing, settings.temperature, self.orders)
                   if settings.temperature > 0 else None)
        total = ideal_to_instrument(ideal, settings, thermal)
        total.metadata.update({
            "phonon_orders": self.orders,
            "errors": "latent heads' spread, calibrated on the validation maps"})
        if raw["warnings"]:
            total.metadata["warnings"] = " | ".join(raw["warnings"])
        if settings.orders not in ("auto", self.orders):
            total.metadata["phonon_orders_note"] = (
                f"orders {settings.orders} requested; the AE route's maps hold the orders "
                f"1..{self.orders} of its training maps (use the partials route to choose)")
        return SimulationResult(total=total, by_element={}, by_order={},
                                stability={"has_imaginary": False, "min_energy_meV": 0.0,
                                           "imaginary_fraction": 0.0})


def _load_heads(path, config):
    from safetensors.numpy import load_file
    if not path.is_file():
        raise ModelFileError(f"{path}: the latent heads are missing from the route folder")
    tensors = load_file(str(path))
    heads, scalers = [], []
    for i in range(int(config["count"])):
        head = LatentMLP(int(config["n_in"]), int(config["n_out"]), int(config["hidden"]))
        state = {k[len(f"{i}.net."):]: torch.from_numpy(v) for k, v in tensors.items()
                 if k.startswith(f"{i}.net.")}
        try:
            head.net.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelFileError(f"{path}: head {i} does not match the card ({exc})") from None
        head.eval()
        heads.append(head)
        scalers.append({k: tensors[f"{i}.{k}"].astype(np.float64) for k in ("xm", "xs", "ym",
                                                                           "ys")})
    return heads, scalers


# ---------------------------------------------------------------------------- training
def _collect(db, cache, predictor, encoder, ids, orders, chunk, log, what):
    """Inputs x (n, f + k), P0 latents (n, k), true latents (n, k) of database crystals."""
    feats, zp, zt = [], [], []
    t0 = time.perf_counter()
    for s in range(0, len(ids), chunk):
        part = ids[s:s + chunk]
        structures = [db.structure(m) for m in part]
        raws = predictor.raw(structures, max_atoms=None, cache=False, features=True)
        inputs = route_inputs(predictor, structures, raws, orders)
        feats.append(np.stack([f for f, _, _ in inputs]))
        zp.append(encoder(brighten(max_normalise(np.stack([p.values for _, p, _ in inputs])
                                                 .astype(np.float32)))))
        zt.append(encoder(brighten(np.asarray(cache.get(part), dtype=np.float32))))
        log(f"{what}: {min(s + chunk, len(ids))} of {len(ids)} crystals "
            f"({time.perf_counter() - t0:.0f} s)")
    f, p, t = np.concatenate(feats), np.concatenate(zp), np.concatenate(zt)
    return np.concatenate([f, p], axis=1), p, t


def route_ids(db, cache, elements, part):
    """Crystals of an AE split part with a cached map and only the model's elements."""
    known = set(elements)
    return [m for m in cache.ids if cache.done[cache.index[m]] and ae_part(m) == part
            and set(map(str, db.record(m)["species"])) <= known]


def fit_route(db, cache, predictor_folder, coder_folder, out, max_train=None, heads=3,
              chunk=32, seed=0, log=print):
    """Train an AE route's latent heads and write the route folder.

    Parameters
    ----------
    db : insnet_core.dataset.reader.Database
    cache : insnet_core.nn.mapdata.MapCache
        The database's maps (the coder's targets).
    predictor_folder : path
        Model folder with the DOS head (its member 0 gives the features).
    coder_folder : path
        Folder with ``encoder.onnx`` / ``decoder.onnx`` (an autoencoder's, or PCA's from
        :func:`insnet_core.nn.onnx_export.export_pca`) and its card.
    out : path
        The route folder to write.
    max_train : int, optional
        Use a random subset of this many training crystals (seeded).
    heads : int
        Ensemble size (the spread gives the errors).

    Returns
    -------
    dict
        The card written.
    """
    import shutil

    from safetensors.numpy import save_file

    from insnet_core.nn.autoencoder import map_grid
    from insnet_core.nn.evaluate import fit_sigma_model
    from insnet_core.nn.onnx_export import OPSET, OnnxHalf
    from insnet_core.nn.predictor import Predictor

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    coder_folder = Path(coder_folder)
    _, coder_card = read_json_card(coder_folder, "autoencoder")
    predictor = Predictor(predictor_folder)
    orders = int(db.config.orders)
    encoder = OnnxHalf(coder_folder / "encoder.onnx")
    train = route_ids(db, cache, predictor.elements, "train")
    if max_train and len(train) > max_train:
        pick = np.random.default_rng(seed).choice(len(train), max_train, replace=False)
        train = [train[i] for i in sorted(pick)]
    val = route_ids(db, cache, predictor.elements, "validation")
    x_t, zp_t, zt_t = _collect(db, cache, predictor, encoder, train, orders, chunk, log, "train")
    x_v, zp_v, zt_v = _collect(db, cache, predictor, encoder, val, orders, chunk, log,
                               "validation")
    tensors, histories = {}, []
    for i in range(heads):
        model, sc, hist = fit_latent_head(x_t, zt_t - zp_t, x_v, zt_v - zp_v, seed=seed + i)
        histories.append(hist)
        log(f"head {i}: {len(hist)} epochs, best validation {min(hist):.4f} (standardised)")
        for k, v in model.net.state_dict().items():
            tensors[f"{i}.net.{k}"] = v.numpy().copy()
        for k, v in sc.items():
            tensors[f"{i}.{k}"] = np.asarray(v, dtype=np.float64)
    save_file(tensors, str(out / _HEADS))
    for name in ("encoder.onnx", "decoder.onnx"):
        if (coder_folder / name).resolve() != (out / name).resolve():
            shutil.copyfile(coder_folder / name, out / name)
    card = {
        "kind": "ae-route", "name": out.name,
        "predictor": predictor.name, "predictor_member": 0, "orders": orders,
        "map_grid": map_grid(),
        "preprocessing": "max-normalised map, brightened g(x) = 1 - (1 - x)^3",
        "database_sha256": cache.meta.get("database_sha256"),
        "coder": {"source": coder_folder.name,
                  "kind": coder_card.get("model", {}).get("kind") or coder_card.get("kind"),
                  "latents": int(zt_t.shape[1]),
                  "onnx_opset": coder_card.get("onnx", {}).get("opset", OPSET),
                  "bytes": sum((out / f).stat().st_size for f in ("encoder.onnx",
                                                                  "decoder.onnx"))},
        "head": {"count": heads, "n_in": int(x_t.shape[1]), "n_out": int(zt_t.shape[1]),
                 "hidden": 256, "inputs": "member 0's pooled backbone features + latents of "
                                          "the engine's 0 K map of the predicted DOS",
                 "target": "latents of the true map minus those of the engine's map"},
        "training": {"train_crystals": len(train), "validation_crystals": len(val),
                     "epochs": [len(h) for h in histories],
                     "best_validation": [float(min(h)) for h in histories],
                     "seconds": round(time.perf_counter() - t_start, 1),
                     "split": "insnet_core.nn.mapdata.ae_part (predictor-test never used)"},
    }
    write_json_card(out, {**card, "sigma_scale": 1.0}, ROUTE_CARD_FORMAT)
    # errors: the heads' spread widened (and floored) to cover the validation maps' truth
    # at 1 and 2 sigma; x_v holds [features, P0 latents]
    route = MapRoute(out)
    val_maps = np.asarray(cache.get(val), dtype=np.float32)
    mean, spread = [], []
    for s in range(0, len(val), 64):
        dec = route.decoded(x_v[s:s + 64, :-zp_v.shape[1]], zp_v[s:s + 64])
        dec = dec.reshape(dec.shape[0], dec.shape[1], -1)
        mean.append(dec.mean(axis=0))
        spread.append(dec.std(axis=0, ddof=1) if heads > 1 else np.zeros_like(dec[0]))
    k, b = fit_sigma_model(np.concatenate(mean), np.concatenate(spread),
                           val_maps.reshape(len(val), -1)) if heads > 1 else (1.0, 0.0)
    card["sigma_scale"], card["sigma_floor"] = float(k), float(b)
    log(f"errors: sqrt(({k:.3g} x heads' spread)^2 + ({b:.3g} x map maximum)^2), fitted "
        "for 1 and 2 sigma on the validation maps")
    write_json_card(out, card, ROUTE_CARD_FORMAT)
    return card


def route_maps(db, route, predictor, ids, chunk=32, log=print):
    """The AE route's max-normalised 0 K maps (n, 300, 300) of database crystals; seconds."""
    out = np.empty((len(ids), *MAP_SHAPE), dtype=np.float32)
    t0 = time.perf_counter()
    for s in range(0, len(ids), chunk):
        structures = [db.structure(m) for m in ids[s:s + chunk]]
        raws = predictor.raw(structures, max_atoms=None, cache=False, features=True)
        inputs = route_inputs(predictor, structures, raws, route.orders)
        mean, _ = route.maps(np.stack([f for f, _, _ in inputs]),
                             np.stack([p.values for _, p, _ in inputs]))
        out[s:s + len(structures)] = max_normalise(mean)
        log(f"AE route {route.name}: {min(s + chunk, len(ids))} of {len(ids)}")
    return out, time.perf_counter() - t0


def write_pca_coder(pca, folder, storage="float16", fitted_on=None):
    """A PCA coder folder: ONNX halves (:func:`~insnet_core.nn.onnx_export.export_pca`)
    and a card, so that :func:`fit_route` takes it like an autoencoder's folder."""
    from insnet_core.nn.onnx_export import OPSET, export_pca
    folder = Path(folder)
    export_pca(pca, folder, storage=storage)
    card = {"kind": "pca", "name": folder.name, "components": int(len(pca.components)),
            "storage": storage, "fitted_on": fitted_on,
            "preprocessing": "max-normalised map, brightened g(x) = 1 - (1 - x)^3",
            "onnx": {"opset": OPSET, "encoder": "encoder.onnx", "decoder": "decoder.onnx"}}
    write_json_card(folder, card, ROUTE_CARD_FORMAT)
    return card


def record_route_table(folder, rows, route_row, partials_row, command):
    """Write the end-to-end table and the map-route choice into a route folder's card.

    ``rows`` are :func:`insnet_core.nn.map_routes.route_table` rows on the predictor's test
    crystals; ``route_row`` / ``partials_row`` name this route's row and the partials
    route's. The AE route becomes ``default_map_route`` only when its MSE (the reference
    work's measure) is lower both in the median and in the upper quartile: the partials
    route also gives element and order contributions and bins beyond the ideal grid, so a
    tie or a mixed result keeps it. The reason, with the numbers, goes with the choice.
    """
    path, card = read_json_card(folder, "map route")
    by_name = {r["name"]: r for r in rows}
    ae, partials = by_name[route_row], by_name[partials_row]
    lower = {q: ae["mse"][q] < partials["mse"][q] for q in ("median", "q3")}
    better = "ae" if all(lower.values()) else "partials"
    card["end_to_end"] = {"command": command, "crystals": int(ae["n"]), "rows": rows}
    card["default_map_route"] = better
    card["default_map_route_reason"] = (
        f"MSE on {ae['n']} predictor-test crystals, median (upper quartile): AE route "
        f"{ae['mse']['median']:.5f} ({ae['mse']['q3']:.5f}), partials route "
        f"{partials['mse']['median']:.5f} ({partials['mse']['q3']:.5f}); cosine median "
        f"{ae['cosine']['median']:.4f} vs {partials['cosine']['median']:.4f}. The AE route is "
        "the default only when lower in both; the partials route also gives element and "
        "order contributions and bins beyond the ideal grid")
    write_json_card(folder, card, ROUTE_CARD_FORMAT)
    return better
