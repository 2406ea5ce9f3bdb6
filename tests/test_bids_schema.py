import pytest

from engine.bids_schema import BidsNameError, get_schema, sanitize_label


def test_orders_entities_by_schema():
    name = get_schema().make_name("func", "bold", {"run": "01", "task": "rest", "echo": "2"})
    assert (
        name.relpath("01", "02") == "sub-01/ses-02/func/sub-01_ses-02_task-rest_run-01_echo-2_bold"
    )


@pytest.mark.parametrize(
    "datatype,suffix,entities,why",
    [
        ("func", "bold", {}, "requires the entity 'task'"),
        ("anat", "bold", {}, "not allowed in anat"),
        ("func", "bold", {"task": "a_b"}, "not a valid value"),
        ("func", "bold", {"task": "x", "part": "foo"}, "one of mag, phase"),
        ("dwi", "dwi", {"task": "x"}, "not allowed for dwi/dwi"),
    ],
)
def test_rejects_invalid(datatype, suffix, entities, why):
    with pytest.raises(BidsNameError, match=why):
        get_schema().make_name(datatype, suffix, entities)


def test_check_relpath():
    s = get_schema()
    assert s.check_relpath("sub-01/anat/sub-01_run-02_T1w.nii.gz") == []
    assert s.check_relpath("sub-01/ses-1/anat/sub-01_ses-2_T1w")
    assert s.check_relpath("sub-01/func/sub-01_run-1_task-x_bold")


def test_sanitize_label():
    assert sanitize_label("finger tapping_2") == "fingerTapping2"
    assert sanitize_label("__") == ""
