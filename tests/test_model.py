from engine.atomic import read_tsv
from engine.model import SEQINFO_COLUMNS, SeriesInfo
from engine.workspace import read_series, write_series


def test_series_round_trip(tmp_path):
    s = SeriesInfo(
        series_id="3-t1",
        dim1=256,
        TR=2.3,
        TE=2.98,
        image_type=("ORIGINAL", "PRIMARY", "M"),
        echo_numbers=[1, 2],
        echo_times=[4.92, 7.38],
        subject="P01",
        session="01",
        inversion_time=900.0,
        is_derived=True,
        protocol_name='odd "name"\\x',
    )
    write_series(tmp_path, [s])
    assert read_series(tmp_path) == [s]
    header = list(read_tsv(tmp_path / "aggregated_dicominfo.tsv")[0].keys())
    assert tuple(header[: len(SEQINFO_COLUMNS)]) == SEQINFO_COLUMNS


def test_reads_heudiconv_dicominfo(shared_data):
    rows = read_series(shared_data / "pairs" / "necsus" / "dicominfo.tsv")
    assert len(rows) == 17
    assert rows[0].image_type[:2] == ("ORIGINAL", "PRIMARY")
    assert rows[0].TR == 2.53 and rows[0].dim3 == 176
