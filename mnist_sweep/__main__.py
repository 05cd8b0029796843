from mnist_sweep.cli import main

main()
