"""The method and layout registries drive the library and the CLI; parameter errors name the
parameter in the library and the flag on the command line."""
from __future__ import annotations

import dataclasses
import pickle

import click
import pytest
import torch

from nc_viz.cams import methods
from nc_viz.cams.compute import CamOutput, compute_cams
from nc_viz.core.errors import ParameterError, UsageError
from nc_viz.figures import layouts
from nc_viz.figures.style import MapStyle


def _choices(command: click.Command, name: str) -> tuple[str, ...]:
    option = next(p for p in command.params if p.name == name)
    assert isinstance(option.type, click.Choice)
    return tuple(option.type.choices)


# ----------------------------------------------------------------------------- methods


def test_method_choices_of_every_command_are_the_registry():
    from nc_viz.cli import batch, compare, neurons

    for module in (compare, batch):
        assert _choices(module.command, "method") == methods.method_names()
    method = next(p for p in neurons.command.params if p.name == "method")  # only those with neuron maps
    assert method.metavar == f"[{'|'.join(methods.neuron_methods())}]" and methods.neuron_methods() == ("cam",)
    assert methods.method_names()[0] == "cam"


def test_method_help_names_every_method_and_its_cost():
    text = methods.method_help()
    for method in methods.METHOD_REGISTRY.values():
        assert method.name in text and method.cost in text
    assert text.count(methods.METHOD_REGISTRY["gradcam"].cost) == 1  # a shared cost is said once


def test_only_cam_is_exact_and_has_neuron_maps():
    assert [m.name for m in methods.METHOD_REGISTRY.values() if m.exact] == ["cam"]
    assert methods.neuron_methods() == ("cam",)
    grad_cam = {m.name: m.grad_cam for m in methods.METHOD_REGISTRY.values() if m.grad_cam is not None}
    assert grad_cam["gradcam++"] == "GradCAMPlusPlus" and "cam" not in grad_cam


def test_each_name_has_one_home():
    """No copies under older names: grad-cam classes are read from the method registry, layout
    names from the layout registry, and the batch package gives only its own entry points (the
    engine's and its modules' names are imported from where they live)."""
    import inspect

    import nc_viz.cams.compute as compute
    import nc_viz.tasks.batch as batch
    import nc_viz.tasks.batch.options as batch_options

    assert not hasattr(compute, "GRAD_METHODS") and not hasattr(batch_options, "LAYOUTS")
    public = {name for name, value in vars(batch).items()
              if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"}
    assert public == set(batch.__all__) == {"BatchEvents", "BatchOptions", "run_batch"}


def test_a_method_says_how_it_is_computed_exactly_once():
    with pytest.raises(ValueError, match="exactly one"):
        methods.CamMethod("both", "Both", "free", exact=True, grad_cam="GradCAM")
    with pytest.raises(ValueError, match="exactly one"):
        methods.CamMethod("none", "None", "free")
    with pytest.raises(ValueError, match="neuron maps"):
        methods.CamMethod("mine", "Mine", "free", neurons=True, compute=lambda *a: None)
    with pytest.raises(ValueError, match="already registered"):
        methods.register(methods.CamMethod("cam", "CAM", "free", exact=True))


@pytest.fixture
def dummy_method():
    """A registered method of its own: a constant map, no grad-cam."""
    def compute(model, x, target):
        logits = model(x).detach()
        t = logits.argmax(1) if target is None else torch.full((len(x),), int(target))
        return CamOutput(logits=logits, target=t, cam=torch.full((len(x), 2, 2), 7.0))

    method = methods.register(methods.CamMethod("dummycam", "Dummy-CAM", "nothing at all", compute=compute))
    yield method
    methods.unregister("dummycam")


def test_a_registered_method_is_accepted_by_the_engine(tiny_net, dummy_method):
    out = compute_cams(tiny_net, torch.randn(2, 3, 16, 16), method="DummyCAM")
    assert torch.equal(out.cam, torch.full((2, 2, 2), 7.0))
    assert "dummycam" in methods.method_help() and methods.method_label("dummycam") == "Dummy-CAM"
    with pytest.raises(ParameterError, match="top_k 3: method 'dummycam' has no neuron maps"):
        compute_cams(tiny_net, torch.randn(1, 3, 16, 16), method="dummycam", top_k=3)


def test_a_registered_method_runs_through_the_pair_and_names_its_figure(small_pair, dummy_method):
    from nc_viz.pair import load_model_pair
    from nc_viz.figures.build import compare_figure

    pair = load_model_pair(*small_pair, device="cpu")
    result = pair.run(torch.randn(2, 3, 32, 32), method="dummycam")
    assert torch.equal(result.roles["nc"].out.cam, torch.full((2, 2, 2), 7.0))
    figure = compare_figure(result, pair.class_name, style=MapStyle(method="dummycam"))
    assert figure.column_titles[1:] == ["CAM-Baseline (Dummy-CAM)", "CAM-Ours (Dummy-CAM)"]


def test_an_unknown_method_names_the_parameter(tiny_net):
    with pytest.raises(ParameterError, match=r"^method 'nope': unknown method; choose from cam, gradcam") as info:
        compute_cams(tiny_net, torch.randn(1, 3, 16, 16), method="nope")
    assert info.value.param == "method" and isinstance(info.value, UsageError)


# ----------------------------------------------------------------------------- parameter errors


def test_neuron_checks_name_parameters_and_the_cli_says_flags(small_pair, rgb_image, tmp_path, capsys):
    from nc_viz.cli import main
    from nc_viz.tasks.figures import check_neuron_options

    with pytest.raises(ParameterError, match=r"^top_k 0 is out of range"):
        check_neuron_options(0, "cam", "contribution")
    with pytest.raises(ParameterError, match=r"^method gradcam: .*; use method cam$"):
        check_neuron_options(4, "gradcam", "contribution")
    with pytest.raises(ParameterError, match=r"^rank_by best: choose from contribution, activation"):
        check_neuron_options(4, "cam", "best")
    base, nc = small_pair
    code = main(["neurons", str(rgb_image), "--baseline", str(base), "--nc", str(nc), "--device", "cpu",
                 "-o", str(tmp_path / "f.png"), "--method", "gradcam"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "'--method': gradcam: " in err and "use --method cam" in err


def test_a_parameter_error_survives_pickling_and_renames():
    exc = ParameterError("top_k", "{param} 70 is out of range")
    again = pickle.loads(pickle.dumps(exc))
    assert str(again) == "top_k 70 is out of range" and again.param == "top_k"
    assert again.naming("--top") == "--top 70 is out of range"
    assert str(ParameterError("method", "{param} '{x}': unknown")) == "method '{x}': unknown"


def test_flag_names():
    from nc_viz.cli.options import flag_name

    assert flag_name("top_k") == "--top" and flag_name("rank_by") == "--rank-by" and flag_name("method") == "--method"


# ----------------------------------------------------------------------------- layouts


def test_layout_choices_are_the_registry():
    from nc_viz.cli import batch

    assert _choices(batch.command, "layout") == layouts.layout_names() == ("compare", "neurons")
    assert layouts.neuron_layouts() == ("neurons",)
    help_text = layouts.layout_help()
    assert all(f"{layout.name}: {layout.summary}" in help_text for layout in layouts.LAYOUT_REGISTRY.values())


def test_an_unknown_layout_names_the_parameter():
    from nc_viz.tasks.batch import BatchOptions

    with pytest.raises(ParameterError, match=r"^layout grid: choose from compare, neurons$"):
        BatchOptions(layout="grid").check()


@pytest.fixture
def dummy_layout():
    """A registered layout: the compare figure of the NC model's map twice, 1 x 3 panels."""
    def draw(result, class_name, names, style, **neurons):
        from nc_viz.figures.raster import Figure, Panel, Row

        picture = result.pictures[0]
        return Figure([Row([Panel(picture, caption=names[0]), Panel(picture), Panel(picture)])],
                      panel_size=style.panel_size or 32)

    layout = layouts.register(layouts.FigureLayout("plain", "the input three times", neurons=False,
                                                   grid=lambda top_k: (1, 3), draw=draw))
    yield layout
    layouts.unregister("plain")


def test_a_registered_layout_is_checked_sized_and_drawn(small_pair, dummy_layout):
    from nc_viz.pair import load_model_pair
    from nc_viz.tasks.batch import BatchOptions
    from nc_viz.tasks.batch.figures import RenderStyle, build_figure

    options = BatchOptions(layout="plain", style=MapStyle(panel_size=40))
    options.check()
    assert options.neuron_k == 0 and not options.draws_neurons
    pair = load_model_pair(*small_pair, device="cpu")
    size = pair.preprocess.input_size
    assert options.figure_shape(size) == (1, 3, 40)
    assert BatchOptions(layout="neurons", top_k=5).figure_shape(size) == (2, 6, 192)
    result = pair.run(torch.randn(1, 3, 32, 32))
    figure = build_figure(result, "x.png", RenderStyle("plain", pair.class_name, MapStyle(panel_size=40)))
    assert len(figure.rows) == 1 and len(figure.rows[0].panels) == 3 and figure.rows[0].panels[0].caption == "x.png"


# ----------------------------------------------------------------------------- readers and families


def test_readers_families_and_architectures_are_kept_in_the_one_registry_class():
    from nc_viz.core.registry import NamedRegistry
    from nc_viz.datasets import formats, reader_names
    from nc_viz.models import list_archs, list_families
    from nc_viz.models import registry as models

    assert isinstance(formats._REGISTRY, NamedRegistry) and formats.READERS is formats._REGISTRY.items
    assert reader_names() == list(formats._REGISTRY.names()) == ["ncviz", "wsol", "imagenet", "cub", "folder",
                                                                 "images"]
    assert all(isinstance(r, NamedRegistry) for r in (models._FAMILIES, models._ARCHS, models._RESOLVERS))
    assert list_families() == list(models._FAMILIES.names()) and "timm" in models._RESOLVERS.items
    assert set(list_archs()) == set(models._ARCHS.names()) and len(list_archs()) == len(models._ARCHS.items)


@pytest.fixture
def dummy_reader():
    """A registered data-set format: one image, class 1, recognised by a file `DUMMY`."""
    from nc_viz.datasets import formats
    from nc_viz.datasets.base import Dataset, Sample

    def read(root, *, problems, images=None, split="test", class_names=None):
        return Dataset("dummy", root, [Sample(image_id="a.png", path=root / "a.png", label=1)])

    formats.register("dummy", lambda root: (root / "DUMMY").is_file(), summary="a DUMMY file")(read)
    yield read
    formats.unregister("dummy")


def test_a_registered_reader_is_a_format_and_is_detected(dummy_reader, tmp_path):
    from nc_viz.datasets import detect_format, formats, read_annotated, reader_names

    (tmp_path / "DUMMY").write_text("")
    assert reader_names()[-1] == "dummy" and detect_format(tmp_path) == "dummy"
    dataset = read_annotated(tmp_path)
    assert dataset.format == "dummy" and [(s.image_id, s.label) for s in dataset.samples] == [("a.png", 1)]
    with pytest.raises(ValueError, match="^a reader named 'dummy' is already registered$"):
        formats.register("dummy", lambda root: False)(dummy_reader)


def test_an_architecture_name_holds_one_spec():
    from nc_viz.models import build_model, get_arch, register_arch, register_family
    from nc_viz.models import registry as models

    spec = get_arch("resnet18")
    original = models._ARCHS.items["resnet18"].build
    other = dataclasses.replace(spec, preprocess=dataclasses.replace(spec.preprocess, input_size=64))
    with pytest.raises(ValueError, match="^an architecture named 'resnet18' is already registered$"):
        register_arch(other, original)
    built = []
    try:
        register_arch(spec, lambda *args, **kwargs: built.append(args) or original(*args, **kwargs))
        build_model("resnet18", 3)
        assert built == [(3,)]  # the same spec again: its new builder is used
    finally:
        register_arch(spec, original)
    assert get_arch("resnet18") is spec and "resnet18" in models.list_archs("resnet")
    family = models.get_family("resnet")
    register_family(family)  # the same family again changes nothing
    with pytest.raises(ValueError, match="^a family named 'resnet' is already registered$"):
        register_family(dataclasses.replace(family, description="another"))
    assert models.get_family("resnet") is family


# ----------------------------------------------------------------------------- parameter names


def test_a_message_names_other_parameters_and_a_caller_renames_them():
    from nc_viz.cli.options import flag_name
    from nc_viz.core.errors import NcVizError, Param, ParameterFailure, parameters_renamed

    exc = ParameterError("resize", "{param} and {param:no_crop} exclude each other")
    assert str(exc) == "resize and no_crop exclude each other"
    assert exc.naming(flag_name) == "--resize and --no-crop exclude each other"
    assert exc.naming("--resize") == "--resize and no_crop exclude each other"
    with parameters_renamed(arch="nc_arch"):
        renamed, mention = ParameterFailure("arch", "pass {param} or {param:arch}"), Param("arch")
    assert str(renamed) == "pass nc_arch or nc_arch" and str(mention) == "nc_arch" and str(Param("arch")) == "arch"
    again = pickle.loads(pickle.dumps(renamed))
    assert type(again) is ParameterFailure and isinstance(again, NcVizError) and not isinstance(again, UsageError)
    assert again.naming(flag_name) == "pass --nc-arch or --nc-arch"


def test_the_cli_spells_flags_in_errors_and_warnings_of_the_second_model(small_pair, rgb_image, tmp_path, capsys):
    """The library says `nc_arch`, `baseline`, `nc`; the user reads --nc-arch, --baseline, --nc."""
    from nc_viz.cli import main
    from nc_viz.models import build_model

    base, nc = small_pair
    plain = tmp_path / "plain.pth"
    torch.save(build_model("resnet20", 5).state_dict(), plain)
    code = main(["compare", str(rgb_image), "--baseline", str(base), "--nc", str(plain), "--nc-arch", "resnet20_nc",
                 "--device", "cpu", "-o", str(tmp_path / "a.png")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.rstrip().endswith("use --nc-arch resnet20")
    code = main(["compare", str(rgb_image), "--baseline", str(nc), "--nc", str(base), "--nc-arch", "resnet20_nc",
                 "--device", "cpu", "-o", str(tmp_path / "b.png")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"{base}: --nc-arch resnet20_nc ignored: the checkpoint says resnet20" in err
    assert f"{nc} has NC blocks and {base} has none: are --baseline and --nc swapped?" in err
