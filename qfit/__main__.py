from qfit.cli import main

main()
